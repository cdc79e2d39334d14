-- raw_open_interest: landed open-interest values of [$start, $end), deduplicated on (exchange, symbol, ts_ms)
-- (instrument_id stands for exchange + symbol); the copy received last wins.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol,
    contracts, amount, value, contract_size
FROM read_parquet($files)  -- the window's files, listed (hour folders, and day files of imports)
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY instrument_id, ts_ms ORDER BY recv_ts_ms DESC) = 1
