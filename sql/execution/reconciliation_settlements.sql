-- reconciliation_settlements: the settled funding of the markets the trader held or was paid on, of
-- [$start, $end) with slack, with the price the venue pays on: the oracle (index) on the venues listed in
-- $oracle_venues (core/venues.py `funding_price`), the mark elsewhere; `other_price` is the other one.
WITH traded AS (
    SELECT DISTINCT exchange, symbol FROM fills
    UNION
    SELECT DISTINCT exchange, symbol FROM funding_payments
)
SELECT
    r.exchange,
    r.symbol,
    r.funding_ts,
    epoch_ms(r.funding_ts_raw) AS funding_ts_ms,
    r.funding_rate,
    r.interval_h,
    CASE WHEN list_contains($oracle_venues, r.exchange) THEN coalesce(r.index_price, r.mark_price)
         ELSE coalesce(r.mark_price, r.index_price) END AS ref_price,
    CASE WHEN list_contains($oracle_venues, r.exchange) THEN r.mark_price ELSE r.index_price END AS other_price
FROM funding_rates AS r
SEMI JOIN traded AS t ON t.exchange = r.exchange AND t.symbol = r.symbol
WHERE r.funding_ts >= $start AND r.funding_ts < $end AND r.funding_rate IS NOT NULL
ORDER BY r.exchange, r.symbol, r.funding_ts
