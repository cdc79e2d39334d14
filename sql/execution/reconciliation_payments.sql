-- reconciliation_payments: what the venue booked in [$start, $end) (with slack).
SELECT exchange, symbol, ts_ms, amount
FROM funding_payments
WHERE ts >= $start AND ts < $end
ORDER BY exchange, symbol, ts_ms
