-- risk_stress: per open pair and price shock, the first leg liquidated and the margin to move; key report_id,
-- pair, shock_pct.
SELECT
    CAST(report_id AS VARCHAR) AS report_id,
    CAST(pair AS VARCHAR) AS pair,
    CAST(shock_pct AS DOUBLE) AS shock_pct,
    CAST(first_liquidated AS VARCHAR) AS first_liquidated,
    CAST(liq_price_first AS DOUBLE) AS liq_price_first,
    CAST(margin_needed_usd AS DOUBLE) AS margin_needed_usd,
    CAST(donor_free_margin_usd AS DOUBLE) AS donor_free_margin_usd,
    CAST(transfer_prevents AS BOOLEAN) AS transfer_prevents,
    CAST(pnl_usd AS DOUBLE) AS pnl_usd
FROM stress_frame
