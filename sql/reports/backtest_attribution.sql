-- backtest_attribution: where the latest run of each strategy made and lost money, USD.
SELECT strategy, round(funding_pnl) AS funding, round(basis_pnl) AS basis, round(fees) AS fees,
       round(slippage) AS slippage, round(borrow_cost) AS borrow, round(liquidation_loss) AS liquidation,
       round(final_equity_usd - capital_usd) AS total
FROM backtest_runs
QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY created_at DESC) = 1
ORDER BY strategy
