-- raw_trades: landed trades of [$start, $end), deduplicated on (exchange, symbol, trade_id).
-- The date/hour filter lets DuckDB prune the hive partitions: only the window's hour folders are read.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol, side, trade_id, price, amount
FROM read_parquet($files, hive_partitioning = true)
WHERE date BETWEEN $start_date AND $end_date
  AND (date::VARCHAR || ' ' || hour) >= $start_hour AND (date::VARCHAR || ' ' || hour) < $end_hour
  AND ts_ms >= $start_ms AND ts_ms < $end_ms
-- A venue may resend a trade (reconnect replay): keep the first copy received.
QUALIFY row_number() OVER (PARTITION BY exchange, symbol, trade_id ORDER BY recv_ts_ms, ts_ms) = 1
