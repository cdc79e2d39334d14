-- The last captured book of each hour per instrument in [$start - 1 h, $end): what a backtest bar's trades walk
-- (hourly bars trade at their close; core/backtest/book_costs.py takes the last book at or before it).
SELECT exchange, symbol, ts_ms, bid_price, bid_size, ask_price, ask_size
FROM raw_order_book
WHERE ts >= $start - INTERVAL 1 HOUR AND ts < $end
QUALIFY row_number() OVER (PARTITION BY exchange, symbol, date_trunc('hour', ts) ORDER BY ts_ms DESC) = 1
ORDER BY exchange, symbol, ts_ms
