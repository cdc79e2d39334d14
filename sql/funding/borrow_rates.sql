-- borrow_rates: spot borrow rates fetched with fetch_borrow_rate_history for [$start, $end) (by ts), from the
-- frame the asset registered (`borrow_frame`). A rate is in force from its ts until the next row's ts of the
-- same exchange and currency (core/borrow.py).
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(currency AS VARCHAR) AS currency,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(ts_ms AS BIGINT) AS ts_ms,
    CAST(rate AS DOUBLE) AS rate,
    CAST(period_h AS DOUBLE) AS period_h,
    CAST(rate_per_h AS DOUBLE) AS rate_per_h,
    CAST(borrow_apr AS DOUBLE) AS borrow_apr,
    CAST(source AS VARCHAR) AS source
FROM borrow_frame
WHERE ts >= $start AND ts < $end
QUALIFY row_number() OVER (PARTITION BY exchange, currency, ts ORDER BY ts_ms DESC) = 1
