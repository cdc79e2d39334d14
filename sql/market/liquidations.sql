-- liquidations: per (exchange, symbol, hour) of [$start, $end) the liquidation prints captured: how many, and the
-- notional (quote currency) and base amount of liquidated longs and shorts. Hours without a print have no row.
WITH prints AS (
    SELECT instrument_id, exchange, symbol, (ts_ms // 3600000) * 3600000 AS hour_ms, position_side, amount, value
    FROM raw_liquidations
    WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
)
SELECT
    CAST(any_value(exchange) AS VARCHAR) AS exchange,
    CAST(any_value(symbol) AS VARCHAR) AS symbol,
    make_timestamp(hour_ms * 1000) AS ts,
    CAST(count(*) AS BIGINT) AS prints,
    CAST(count(*) FILTER (WHERE position_side > 0) AS BIGINT) AS long_prints,
    CAST(count(*) FILTER (WHERE position_side < 0) AS BIGINT) AS short_prints,
    CAST(coalesce(sum(value) FILTER (WHERE position_side > 0), 0) AS DOUBLE) AS long_notional,
    CAST(coalesce(sum(value) FILTER (WHERE position_side < 0), 0) AS DOUBLE) AS short_notional,
    CAST(coalesce(sum(amount) FILTER (WHERE position_side > 0), 0) AS DOUBLE) AS long_amount,
    CAST(coalesce(sum(amount) FILTER (WHERE position_side < 0), 0) AS DOUBLE) AS short_amount,
    CAST(max(value) AS DOUBLE) AS largest_notional
FROM prints
GROUP BY instrument_id, hour_ms
