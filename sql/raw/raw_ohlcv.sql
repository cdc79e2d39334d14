-- raw_ohlcv: venue candles of [$start, $end) by bar open time, deduplicated on
-- (exchange, symbol, timeframe_s, ts_ms) (instrument_id stands for exchange + symbol). A venue re-sends
-- the open bar as it updates: the last one received is the final bar.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, instrument_id, exchange, symbol, timeframe_s, open, high, low, close, volume,
    quote_volume, trade_count, taker_buy_volume
FROM read_parquet($files, union_by_name = true)  -- the window's files (hour folders, import day files); files
-- landed before a column existed read it as NULL
WHERE ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY instrument_id, timeframe_s, ts_ms ORDER BY recv_ts_ms DESC) = 1
