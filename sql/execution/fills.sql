-- fills: the trader's fills of [$start, $end) (the venue's trade time) as the venue reported them, one per
-- (exchange, symbol, trade_id): a fill fetched again after a restart is not counted twice (first copy wins).
SELECT
    make_timestamp(ts_ms * 1000) AS ts,
    ts_ms, recv_ts_ms, exchange, symbol, amount, price, fee, fee_usd, ref_mid, leg, side, taker, trade_id,
    order_id, client_order_id, pair, fee_currency
FROM read_parquet($files, hive_partitioning = true)
WHERE date BETWEEN $start_date AND $end_date
  AND (date::VARCHAR || ' ' || hour) >= $start_hour AND (date::VARCHAR || ' ' || hour) < $end_hour
  AND ts_ms >= $start_ms AND ts_ms < $end_ms
QUALIFY row_number() OVER (PARTITION BY exchange, symbol, trade_id ORDER BY recv_ts_ms, ts_ms) = 1
