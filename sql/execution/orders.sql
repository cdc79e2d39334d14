-- orders: every state of every order the trader sent, of [$start, $end) (the state's time): the journaled
-- intent, the venue's acknowledgement, fills so far, the final status. One row per (exchange,
-- client_order_id, ts_ms, status); a copy landed again after a restart (the same state re-fetched) is dropped,
-- the last received wins. The latest state of an order is its row with the largest (ts_ms, status).
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, exchange, symbol, amount, filled, price, average, fee_usd, ref_mid, leg, side, purpose,
    status, reduce_only, order_type, attempt, client_order_id, order_id, decision, pair, reason
FROM read_parquet($files, hive_partitioning = true)
WHERE date BETWEEN $start_date AND $end_date
  AND (date::VARCHAR || ' ' || hour) >= $start_hour AND (date::VARCHAR || ' ' || hour) < $end_hour
  AND ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY exchange, client_order_id, ts_ms, status ORDER BY recv_ts_ms DESC) = 1
