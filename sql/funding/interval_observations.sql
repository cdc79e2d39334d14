-- Interval observations a source reported: raw_funding rows' interval_h (and funding_history's where the
-- source gave one), reduced to the points where a key's interval changes. ts_ms = the settlement time.
WITH reported AS (
    SELECT exchange, symbol, funding_ts_ms AS ts_ms, interval_h FROM raw_funding WHERE interval_h > 0
    UNION ALL
    SELECT exchange, symbol, funding_ts_ms AS ts_ms, interval_h FROM funding_history WHERE interval_h > 0
)
SELECT exchange, symbol, ts_ms, interval_h
FROM reported
QUALIFY interval_h IS DISTINCT FROM lag(interval_h) OVER (PARTITION BY exchange, symbol ORDER BY ts_ms)
ORDER BY exchange, symbol, ts_ms
