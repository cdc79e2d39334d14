-- risk_live_equity: the live book's equity curve (execution's `live_pnl`): the last value and the drawdown
-- from its peak are what the limits are checked against.
SELECT ts, equity_usd AS equity, 1 - equity_usd / max(equity_usd) OVER (ORDER BY ts) AS drawdown
FROM live_pnl
ORDER BY ts
