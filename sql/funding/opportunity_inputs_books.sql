-- The latest captured book of each instrument in [$start, $end) (the opportunities' as-of hour and the hours
-- before it the config allows), levels as lists: what the capacity walks.
SELECT exchange, symbol, ts_ms, bid_price, bid_size, ask_price, ask_size
FROM raw_order_book
WHERE ts >= $start AND ts < $end
QUALIFY row_number() OVER (PARTITION BY exchange, symbol ORDER BY ts_ms DESC) = 1
