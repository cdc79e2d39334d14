-- Predicted (not yet settled) funding as streamed, known in [$start, $end).
SELECT exchange, symbol, ts_ms, funding_ts_ms, funding_rate, next_funding_rate, interval_h, mark_price, index_price
FROM raw_funding
WHERE is_settled = 0 AND ts >= $start AND ts < $end AND funding_rate IS NOT NULL AND NOT isnan(funding_rate)
