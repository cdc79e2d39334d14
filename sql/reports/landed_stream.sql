-- landed_stream: rows and event-time span of one stream in the landing zone ($files: its landed files, hour
-- folders' and day files).
SELECT count(*) AS n_rows, min(ts_ms) AS first_ms, max(ts_ms) AS last_ms
FROM read_parquet($files)
