-- backtest_trades: every leg trade of a run; key run_id, trade_no.
SELECT
    CAST(run_id AS VARCHAR) AS run_id,
    CAST(trade_no AS BIGINT) AS trade_no,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(pair AS VARCHAR) AS pair,
    CAST(leg AS VARCHAR) AS leg,
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(side AS VARCHAR) AS side,
    CAST(qty AS DOUBLE) AS qty,
    CAST(price AS DOUBLE) AS price,
    CAST(notional_usd AS DOUBLE) AS notional_usd,
    CAST(fee_usd AS DOUBLE) AS fee_usd,
    CAST(slippage_usd AS DOUBLE) AS slippage_usd,
    CAST(reason AS VARCHAR) AS reason
FROM trades_frame
