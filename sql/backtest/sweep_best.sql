-- The best full-window grid points (by Sharpe) of each strategy's latest sweep.
WITH latest AS (
    SELECT run_id
    FROM backtest_sweep
    QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY created_at DESC) = 1
)
SELECT strategy, point, enter_apr, exit_apr, max_hold_h, leverage, sharpe, annual_return, max_drawdown,
       CAST(trade_count AS BIGINT) AS trade_count
FROM backtest_sweep
WHERE part = 'full' AND run_id IN (SELECT run_id FROM latest)
QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY sharpe DESC NULLS LAST, point) <= $per_strategy
ORDER BY strategy, sharpe DESC NULLS LAST, point
