-- The latest hour of every venue pair's funding spread.
SELECT *
FROM funding_spreads
QUALIFY ts = max(ts) OVER (PARTITION BY underlying, exchange_a, symbol_a, exchange_b, symbol_b)
