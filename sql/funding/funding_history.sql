-- funding_history: settled rates fetched with fetch_funding_rate_history for [$start, $end) (by funding_ts),
-- from the frame the asset registered (`history_frame`). funding_ts is the venue time rounded to the hour
-- (jitter and late minutes removed); funding_ts_ms keeps the raw venue time.
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(funding_ts AS TIMESTAMP) AS funding_ts,
    CAST(funding_ts_ms AS BIGINT) AS funding_ts_ms,
    CAST(funding_rate AS DOUBLE) AS funding_rate,
    CAST(interval_h AS DOUBLE) AS interval_h,
    CAST(mark_price AS DOUBLE) AS mark_price,
    CAST(source AS VARCHAR) AS source
FROM history_frame
WHERE funding_ts >= $start AND funding_ts < $end
QUALIFY row_number() OVER (PARTITION BY exchange, symbol, funding_ts ORDER BY funding_ts_ms DESC) = 1
