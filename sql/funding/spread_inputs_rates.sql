-- Settlements that accrued over [$start, $end): an 8h settlement at end + 7h still covers the last hour.
SELECT exchange, symbol, funding_ts, interval_h, rate_per_hour
FROM funding_rates
WHERE funding_ts > $start AND funding_ts < $end + INTERVAL 8 HOUR
