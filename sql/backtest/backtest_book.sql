-- backtest_book: the legs still open after a run's last bar (what risk_report stresses); key run_id, pair, leg.
SELECT
    CAST(run_id AS VARCHAR) AS run_id,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(pair AS VARCHAR) AS pair,
    CAST(leg AS VARCHAR) AS leg,
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(underlying AS VARCHAR) AS underlying,
    CAST(kind AS VARCHAR) AS kind,
    CAST(units AS DOUBLE) AS units,
    CAST(entry_price AS DOUBLE) AS entry_price,
    CAST(mark_price AS DOUBLE) AS mark_price,
    CAST(wallet_usd AS DOUBLE) AS wallet_usd,
    CAST(notional_usd AS DOUBLE) AS notional_usd,
    CAST(mmr AS DOUBLE) AS mmr,
    CAST(taker_fee AS DOUBLE) AS taker_fee,
    CAST(leverage AS DOUBLE) AS leverage
FROM book_frame
