-- Predictions known before [$start, $end) ended (with a look-back for hours without a fresh one).
SELECT exchange, symbol, ts, funding_ts, interval_h, rate_per_hour
FROM funding_predictions
WHERE ts >= $start - INTERVAL 8 HOUR AND ts < $end
