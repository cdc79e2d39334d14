-- The latest bucket of every perp's basis, per timeframe.
SELECT *
FROM basis
QUALIFY ts = max(ts) OVER (PARTITION BY exchange, symbol, timeframe)
