-- live_pnl: the live book's P&L as of each hour of [$start, $end), split as the backtest splits it
-- (core/execution/pnl.py computes it into the registered frame).
SELECT
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(funding_usd AS DOUBLE) AS funding_usd,
    CAST(basis_usd AS DOUBLE) AS basis_usd,
    CAST(fees_usd AS DOUBLE) AS fees_usd,
    CAST(slippage_usd AS DOUBLE) AS slippage_usd,
    CAST(pnl_usd AS DOUBLE) AS pnl_usd,
    CAST(equity_usd AS DOUBLE) AS equity_usd,
    CAST(gross_exposure_usd AS DOUBLE) AS gross_exposure_usd,
    CAST(open_legs AS BIGINT) AS open_legs
FROM pnl_frame
WHERE ts >= $start AND ts < $end
