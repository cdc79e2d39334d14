-- capture_stats: the capture job's own throughput samples of [$start, $end), one per (node, rank, stream, ts_ms).
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, node, rank, stream, messages, messages_per_s, ring_fill_pct, flush_latency_ms,
    drops, waits, reconnects
FROM read_parquet($files)  -- the window's files, listed (hour folders, and day files of imports)
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY node, rank, stream, ts_ms ORDER BY recv_ts_ms DESC) = 1
