-- The latest run of each strategy (the comparison on backtest_runs' page), best Sharpe first.
SELECT *
FROM backtest_runs
QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY created_at DESC) = 1
ORDER BY sharpe DESC NULLS LAST, strategy
