-- The last ticker of each instrument in each $bucket_ms bucket of [$start, $end) (ts = bucket start).
-- Buckets on the integer ts_ms (a TIMESTAMP bucket could round a tick into the neighbouring minute).
SELECT
    exchange,
    symbol,
    make_timestamp((ts_ms // $bucket_ms) * $bucket_ms * 1000) AS ts,
    arg_max(bid, ts_ms) AS bid,
    arg_max(ask, ts_ms) AS ask,
    arg_max(mark_price, ts_ms) AS mark_price,
    arg_max(index_price, ts_ms) AS index_price
FROM raw_tickers
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
GROUP BY exchange, symbol, ts_ms // $bucket_ms
