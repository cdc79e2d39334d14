-- reconciliation_settlements: the settled funding of the markets the trader held or was paid on, of
-- [$start, $end) with slack, with the price the venue pays on: the oracle (index) on the venues listed in
-- $oracle_venues (core/venues.py `funding_price`), the mark elsewhere; `other_price` is the other one. A settled
-- row that carries no such price (venue histories give the mark at most) takes the streamed one last known at or
-- before the settlement (raw_funding's snapshots, at most $snapshot_ms earlier).
WITH traded AS (
    SELECT DISTINCT exchange, symbol FROM fills
    UNION
    SELECT DISTINCT exchange, symbol FROM funding_payments
),
settled AS (
    SELECT r.*, epoch_ms(r.funding_ts_raw) AS settled_ms
    FROM funding_rates AS r
    SEMI JOIN traded AS t ON t.exchange = r.exchange AND t.symbol = r.symbol
    WHERE r.funding_ts >= $start AND r.funding_ts < $end AND r.funding_rate IS NOT NULL
),
snapshots AS (
    SELECT exchange, symbol, ts_ms, mark_price, index_price
    FROM raw_funding
    WHERE is_settled = 0 AND ts_ms >= epoch_ms($start) - $snapshot_ms AND ts_ms < epoch_ms($end)
),
priced AS (
    SELECT
        s.*,
        CASE WHEN s.settled_ms - n.ts_ms <= $snapshot_ms THEN n.mark_price END AS streamed_mark,
        CASE WHEN s.settled_ms - n.ts_ms <= $snapshot_ms THEN n.index_price END AS streamed_index
    FROM settled AS s
    ASOF LEFT JOIN snapshots AS n ON n.exchange = s.exchange AND n.symbol = s.symbol AND s.settled_ms >= n.ts_ms
)
SELECT
    exchange,
    symbol,
    funding_ts,
    settled_ms AS funding_ts_ms,
    funding_rate,
    interval_h,
    CASE WHEN list_contains($oracle_venues, exchange) THEN coalesce(index_price, streamed_index, mark_price)
         ELSE coalesce(mark_price, streamed_mark, index_price) END AS ref_price,
    CASE WHEN list_contains($oracle_venues, exchange) THEN coalesce(mark_price, streamed_mark)
         ELSE coalesce(index_price, streamed_index) END AS other_price
FROM priced
ORDER BY exchange, symbol, funding_ts
