-- risk_book_closes: hourly closes (ts = bar open) in [$start, $end) for the current book's historical
-- simulation (core.risk.book_scenarios); the book's legs are picked in Python.
SELECT exchange, symbol, ts, close
FROM ohlcv_1h
WHERE ts >= $start AND ts < $end
