-- raw_funding: landed funding observations of [$start, $end) (by ts_ms, when the value was known),
-- deduplicated on (exchange, symbol, funding_ts_ms, ts_ms, is_settled) (instrument_id stands for
-- exchange + symbol); the copy received last wins.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    make_timestamp(funding_ts_ms * 1000) AS funding_ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol, is_settled, funding_ts_ms,
    funding_rate, next_funding_rate, interval_h, mark_price, index_price
FROM read_parquet($files)  -- the window's files, listed (hour folders, and day files of imports)
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (
    PARTITION BY instrument_id, funding_ts_ms, ts_ms, is_settled ORDER BY recv_ts_ms DESC
) = 1
