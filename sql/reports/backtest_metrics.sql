-- backtest_metrics: the latest run of each strategy.
SELECT strategy, n_pairs, round(total_return * 100, 3) AS return_pct, round(annual_return * 100, 2) AS apr_pct,
       round(sharpe, 2) AS sharpe, round(max_drawdown * 100, 3) AS max_dd_pct, trade_count AS trades,
       round(avg_holding_h, 1) AS avg_hold_h, round(time_in_market, 2) AS in_market
FROM backtest_runs
QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY created_at DESC) = 1
ORDER BY strategy
