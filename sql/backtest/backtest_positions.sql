-- backtest_positions: one row per held episode (round trip) of a run; key run_id, pair, entry_ts.
SELECT
    CAST(run_id AS VARCHAR) AS run_id,
    CAST(pair AS VARCHAR) AS pair,
    CAST(direction AS INTEGER) AS direction,
    CAST(entry_ts AS TIMESTAMP) AS entry_ts,
    CAST(exit_ts AS TIMESTAMP) AS exit_ts,
    CAST(hours AS DOUBLE) AS hours,
    CAST(units AS DOUBLE) AS units,
    CAST(entry_price_a AS DOUBLE) AS entry_price_a,
    CAST(entry_price_b AS DOUBLE) AS entry_price_b,
    CAST(pnl_usd AS DOUBLE) AS pnl_usd,
    CAST(funding_usd AS DOUBLE) AS funding_usd,
    CAST(exit_reason AS VARCHAR) AS exit_reason,
    CAST(size_source AS VARCHAR) AS size_source,
    CAST(capital_unused_usd AS DOUBLE) AS capital_unused_usd
FROM positions_frame
