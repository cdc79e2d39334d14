-- The spot borrow rate in force at the opportunities' as-of time per exchange and currency: its last row at or
-- before $as_of, published no earlier than $since (a rate older than the config allows is not used).
SELECT exchange, currency, ts, borrow_apr
FROM borrow_rates
WHERE ts <= $as_of AND ts >= $since
QUALIFY row_number() OVER (PARTITION BY exchange, currency ORDER BY ts DESC) = 1
