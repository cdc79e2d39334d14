-- Settled rates over the look-back [$start, $end + 8h) (see spread_inputs_rates).
SELECT exchange, symbol, funding_ts, interval_h, rate_per_hour
FROM funding_rates
WHERE funding_ts > $start AND funding_ts < $end + INTERVAL 8 HOUR
