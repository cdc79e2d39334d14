-- The perps funding_spreads of [$start, $end) may compare: those with a settlement or a prediction its hours use.
SELECT DISTINCT exchange, symbol
FROM funding_rates
WHERE funding_ts > $start AND funding_ts < $end + INTERVAL 8 HOUR AND exchange IS NOT NULL AND symbol IS NOT NULL
UNION
SELECT DISTINCT exchange, symbol
FROM funding_predictions
WHERE ts >= $start - INTERVAL 8 HOUR AND ts < $end AND exchange IS NOT NULL AND symbol IS NOT NULL
ORDER BY exchange, symbol
