-- The newest row of every instrument's market streams (what a stale stream is measured by).
SELECT exchange, symbol, 'trades' AS stream, max(ts) AS last_ts FROM raw_trades GROUP BY exchange, symbol
UNION ALL
SELECT exchange, symbol, 'tickers' AS stream, max(ts) AS last_ts FROM raw_tickers GROUP BY exchange, symbol
UNION ALL
SELECT exchange, symbol, 'funding' AS stream, max(ts) AS last_ts FROM raw_funding GROUP BY exchange, symbol
