-- funding_payments: funding the venue booked to the trader's positions, of [$start, $end) (the settlement's
-- time), one per (exchange, symbol, ts_ms): fetched again after a restart, it is counted once.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, exchange, symbol, amount, currency, funding_id
FROM read_parquet($files, hive_partitioning = true)
WHERE date BETWEEN $start_date AND $end_date
  AND (date::VARCHAR || ' ' || hour) >= $start_hour AND (date::VARCHAR || ' ' || hour) < $end_hour
  AND ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY exchange, symbol, ts_ms ORDER BY recv_ts_ms) = 1
