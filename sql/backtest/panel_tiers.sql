-- The leverage tiers of each perp for a backtest: the schedule in force at the window's end ($end), else the
-- first one fetched (tiers are fetched now; older history has no schedule of its own: the nearest is the best
-- evidence). One schedule per market and run.
WITH pick AS (
    SELECT exchange, symbol, coalesce(max(valid_from) FILTER (WHERE valid_from <= $end), min(valid_from)) AS chosen
    FROM leverage_tiers
    GROUP BY exchange, symbol
)
SELECT t.exchange, t.symbol, t.min_notional, t.max_notional, t.mmr, t.maintenance_amount
FROM leverage_tiers AS t
JOIN pick AS p ON t.exchange = p.exchange AND t.symbol = p.symbol AND t.valid_from = p.chosen
ORDER BY t.exchange, t.symbol, t.max_notional
