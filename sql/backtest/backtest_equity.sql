-- backtest_equity: the equity curve of a run with its PnL by source per bar; key run_id, ts.
SELECT
    CAST(run_id AS VARCHAR) AS run_id,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(equity AS DOUBLE) AS equity,
    CAST(drawdown AS DOUBLE) AS drawdown,
    CAST(basis_pnl AS DOUBLE) AS basis_pnl,
    CAST(funding_pnl AS DOUBLE) AS funding_pnl,
    CAST(borrow_pnl AS DOUBLE) AS borrow_cost,
    CAST(fees_pnl AS DOUBLE) AS fees,
    CAST(slippage_pnl AS DOUBLE) AS slippage,
    CAST(liquidation_pnl AS DOUBLE) AS liquidation_loss,
    CAST(gross_exposure AS DOUBLE) AS gross_exposure_usd,
    CAST(in_market AS BOOLEAN) AS in_market
FROM equity_frame
