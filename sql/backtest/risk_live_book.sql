-- risk_live_book: the live book, i.e. the latest snapshot of each pair leg the trader holds (execution's
-- `positions` table), in core/risk.py's book columns.
SELECT * FROM (
    SELECT
        pair,
        CASE WHEN leg = 0 THEN 'a' ELSE 'b' END AS leg,
        exchange,
        symbol,
        underlying,
        CASE WHEN is_perp = 1 THEN 'perp' ELSE 'spot' END AS kind,
        units,
        entry_price,
        mark_price,
        CASE WHEN isfinite(wallet_usd) THEN wallet_usd ELSE 0.0 END AS wallet_usd,
        mmr,
        taker_fee,
        ts
    FROM positions
    QUALIFY row_number() OVER (PARTITION BY pair, leg ORDER BY ts_ms DESC) = 1
)
WHERE units <> 0
ORDER BY pair, leg
