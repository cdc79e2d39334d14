-- positions: snapshots of each pair leg of [$start, $end): the trader's units and target beside the venue's
-- position, the reference price, margin and liquidation price. One per (pair, leg, ts_ms), last received wins.
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, exchange, symbol, units, target_units, venue_units, entry_price, mark_price, wallet_usd,
    liquidation_price, mmr, taker_fee, leverage, leg, is_perp, phase, underlying, pair, decision
FROM read_parquet($files, hive_partitioning = true)
WHERE date BETWEEN $start_date AND $end_date
  AND (date::VARCHAR || ' ' || hour) >= $start_hour AND (date::VARCHAR || ' ' || hour) < $end_hour
  AND ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY pair, leg, ts_ms ORDER BY recv_ts_ms DESC) = 1
