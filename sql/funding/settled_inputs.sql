-- Settled rates around [$start, $end): streamed settled rows and fetched history. The window is widened by
-- an hour each side because keys are rounded to the interval grid afterwards (a late settlement at 00:02
-- belongs to 00:00); the asset keeps only rows whose rounded key falls in the window.
SELECT exchange, symbol, funding_ts_ms, funding_rate, mark_price, index_price, 0 AS priority
FROM raw_funding
WHERE is_settled = 1 AND funding_ts_ms >= $start_ms - 3600000 AND funding_ts_ms < $end_ms + 3600000
UNION ALL
SELECT exchange, symbol, funding_ts_ms, funding_rate, mark_price, CAST(NULL AS DOUBLE) AS index_price, 1 AS priority
FROM funding_history
WHERE funding_ts_ms >= $start_ms - 3600000 AND funding_ts_ms < $end_ms + 3600000
ORDER BY priority, funding_ts_ms
