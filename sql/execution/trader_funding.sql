-- trader_funding: every funding payment booked to the trader before $end.
SELECT ts, exchange, symbol, amount
FROM funding_payments
WHERE ts < $end
ORDER BY ts
