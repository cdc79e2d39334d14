-- open_interest: per (exchange, symbol, hour) of [$start, $end) the last open interest captured in the hour and
-- its change since the last value of the previous captured hour (looked for up to $look_back_ms before $start,
-- so a one-hour run gives the same change as a ranged one: idempotent per partition). Its notional is the
-- venue's value, else the base amount x the close of the value's minute in ohlcv_1m (binance's and bybit's
-- linear REST give the amount only).
WITH hours AS (
    SELECT
        instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol,
        (ts_ms // 3600000) * 3600000 AS hour_ms,
        count(*) AS samples,
        arg_max(ts_ms, ts_ms) AS last_ts_ms,
        arg_max(contracts, ts_ms) AS oi_contracts,
        arg_max(amount, ts_ms) AS oi_amount,
        arg_max(value, ts_ms) AS oi_value,
        min(amount) AS oi_amount_low,
        max(amount) AS oi_amount_high
    FROM raw_open_interest
    WHERE ts_ms >= $start_ms - $look_back_ms AND ts_ms < $end_ms
    GROUP BY instrument_id, hour_ms
),
changes AS (
    SELECT *,
        lag(oi_amount) OVER w AS prev_amount,
        lag(oi_value) OVER w AS prev_value
    FROM hours
    WINDOW w AS (PARTITION BY instrument_id ORDER BY hour_ms)
)
SELECT
    CAST(changes.exchange AS VARCHAR) AS exchange,
    CAST(changes.symbol AS VARCHAR) AS symbol,
    make_timestamp(hour_ms * 1000) AS ts,
    CAST(samples AS BIGINT) AS samples,
    make_timestamp(last_ts_ms * 1000) AS last_ts,
    CAST(oi_contracts AS DOUBLE) AS oi_contracts,
    CAST(oi_amount AS DOUBLE) AS oi_amount,
    CAST(oi_value AS DOUBLE) AS oi_value,
    CAST(oi_amount_low AS DOUBLE) AS oi_amount_low,
    CAST(oi_amount_high AS DOUBLE) AS oi_amount_high,
    CAST(oi_amount - prev_amount AS DOUBLE) AS oi_amount_change,
    CAST(100.0 * (oi_amount - prev_amount) / nullif(prev_amount, 0) AS DOUBLE) AS oi_amount_change_pct,
    CAST(oi_value - prev_value AS DOUBLE) AS oi_value_change,
    CAST(CASE WHEN isfinite(oi_value) THEN oi_value ELSE oi_amount * bars.close END AS DOUBLE) AS oi_notional,
    CASE WHEN isfinite(oi_value) THEN 'venue' WHEN isfinite(oi_amount * bars.close) THEN 'close' END
        AS notional_source
FROM changes
LEFT JOIN ohlcv_1m AS bars
    ON bars.exchange = changes.exchange AND bars.symbol = changes.symbol
    AND bars.ts = make_timestamp((last_ts_ms // 60000) * 60000 * 1000)
WHERE hour_ms >= $start_ms AND hour_ms < $end_ms
