-- panel_predictions: predicted rates as captured (ts = when known), from $lookback to $end.
SELECT
    exchange,
    symbol,
    epoch_ms(ts) AS ts_ms,
    predicted_rate,
    interval_h
FROM funding_predictions
WHERE ts >= $lookback AND ts < $end AND predicted_rate IS NOT NULL AND interval_h > 0
