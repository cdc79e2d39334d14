-- raw_trades: landed trades of [$start, $end), deduplicated on (exchange, symbol, trade_id).
-- The date/hour filter lets DuckDB prune the hive partitions: only the window's hour folders are read.
-- A venue may resend a trade (reconnect replay): the first copy received wins. The window partitions by
-- instrument_id, which maps 1:1 to (exchange, symbol) in a data folder's registry: integer keys sort
-- about twice as fast as the two strings.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol, side, trade_id, price, amount, contracts, contract_size, cost
FROM read_parquet($files, union_by_name = true)  -- the window's files (hour folders, import day files); files
-- landed before a column existed read it as NULL
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY instrument_id, trade_id ORDER BY recv_ts_ms, ts_ms) = 1
