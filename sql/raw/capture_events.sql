-- capture_events: gaps, reconnects, quarantined messages... of [$start, $end); exact duplicates dropped.
SELECT DISTINCT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol, stream, kind, count, start_ms, end_ms, reason
FROM read_parquet($files)  -- the window's files, listed (hour folders, and day files of imports)
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
