-- Every settlement time known (streamed settled rows and fetched history), to infer intervals from spacing.
SELECT DISTINCT exchange, symbol, funding_ts_ms FROM raw_funding WHERE is_settled = 1
UNION
SELECT DISTINCT exchange, symbol, funding_ts_ms FROM funding_history
