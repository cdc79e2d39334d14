-- Spot borrow rates published before the backtest window's end (rows before its start too: the rate in force
-- at the first bar was published earlier). A rate holds until the next row of its exchange and currency.
SELECT exchange, currency, ts_ms, borrow_apr
FROM borrow_rates
WHERE ts < $end
ORDER BY exchange, currency, ts_ms
