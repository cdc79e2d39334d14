-- The point-in-time predictions of the settlements in [$start, $end) (widened like settled_inputs).
SELECT exchange, symbol, ts, funding_ts, predicted_rate
FROM funding_predictions
WHERE funding_ts >= $start - INTERVAL 1 HOUR AND funding_ts < $end + INTERVAL 1 HOUR
