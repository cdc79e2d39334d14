-- Settlements of the week before $end (the funding heat map: the last day and the last week per venue).
SELECT exchange, symbol, funding_ts, funding_rate, interval_h
FROM funding_rates
WHERE funding_ts >= $end - INTERVAL 7 DAY AND funding_ts < $end
