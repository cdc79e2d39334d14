-- Every venue pair's hourly spread over the week before $end (the spread plot and its summary table).
SELECT underlying, exchange_a, exchange_b, ts, funding_spread_apr, is_predicted_a, is_predicted_b, basis_spread_bps
FROM funding_spreads
WHERE ts >= $end - INTERVAL 7 DAY AND ts < $end
ORDER BY underlying, exchange_a, exchange_b, ts
