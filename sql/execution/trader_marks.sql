-- trader_marks: the price each leg was marked at in the trader's position snapshots, before $end.
SELECT ts, exchange, symbol, mark_price AS mark
FROM positions
WHERE ts < $end AND isfinite(mark_price)
ORDER BY ts
