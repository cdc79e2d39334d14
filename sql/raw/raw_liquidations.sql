-- raw_liquidations: landed liquidation prints of [$start, $end), deduplicated on (exchange, symbol,
-- liquidation_id) (instrument_id stands for exchange + symbol; the id hashes the print's time, side, price and
-- size: venues give none); the copy received first wins.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol,
    position_side, liquidation_id, price, contracts, amount, value, contract_size
FROM read_parquet($files)  -- the window's files, listed (hour folders, and day files of imports)
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY instrument_id, liquidation_id ORDER BY recv_ts_ms, ts_ms) = 1
