-- panel_settlements: settled funding with its interval and the reference price it was paid on, from
-- $lookback (the as-of expectation needs the last settlement before $start) to $end.
SELECT
    exchange,
    symbol,
    epoch_ms(funding_ts) AS funding_ts_ms,
    funding_rate,
    interval_h,
    CASE WHEN exchange = 'hyperliquid' THEN coalesce(index_price, mark_price)
         ELSE coalesce(mark_price, index_price) END AS ref_price
FROM funding_rates
WHERE funding_ts >= $lookback AND funding_ts < $end AND funding_rate IS NOT NULL
