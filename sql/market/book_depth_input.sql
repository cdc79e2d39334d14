-- book_depth's input: the window's book snapshots (levels as lists), in time order.
SELECT exchange, symbol, ts_ms, bid_price, bid_size, ask_price, ask_size
FROM raw_order_book
WHERE ts >= $start AND ts < $end
ORDER BY exchange, symbol, ts_ms
