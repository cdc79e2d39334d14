-- balances: the trader's venue balances of [$start, $end), one per (exchange, currency, ts_ms).
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, exchange, total, free, used, equity_usd, currency
FROM read_parquet($files, hive_partitioning = true)
WHERE date BETWEEN $start_date AND $end_date
  AND (date::VARCHAR || ' ' || hour) >= $start_hour AND (date::VARCHAR || ' ' || hour) < $end_hour
  AND ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY exchange, currency, ts_ms ORDER BY recv_ts_ms DESC) = 1
