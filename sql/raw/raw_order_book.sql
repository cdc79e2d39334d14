-- raw_order_book: landed book snapshots of [$start, $end), deduplicated on (exchange, symbol, ts_ms)
-- (instrument_id stands for exchange + symbol); the copy received last wins.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol,
    updates, nonce,
    CAST(bid_price AS DOUBLE[]) AS bid_price, CAST(bid_size AS DOUBLE[]) AS bid_size,
    CAST(ask_price AS DOUBLE[]) AS ask_price, CAST(ask_size AS DOUBLE[]) AS ask_size,
    CAST(coalesce(from_rest, 0) AS TINYINT) AS from_rest  -- files landed before the column: websocket books
FROM read_parquet($files, union_by_name = true)  -- the window's files, listed (hour folders, and day files of imports)
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY instrument_id, ts_ms ORDER BY recv_ts_ms DESC) = 1
