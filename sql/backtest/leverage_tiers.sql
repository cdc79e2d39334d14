-- leverage_tiers: every schedule fetched so far with its validity interval (registered frame, built by
-- core.leverage_tiers.merge_history from the table as it was and the latest fetch).
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(tier AS BIGINT) AS tier,
    CAST(min_notional AS DOUBLE) AS min_notional,
    CAST(max_notional AS DOUBLE) AS max_notional,
    CAST(mmr AS DOUBLE) AS mmr,
    CAST(maintenance_amount AS DOUBLE) AS maintenance_amount,
    CAST(max_leverage AS DOUBLE) AS max_leverage,
    CAST(valid_from AS TIMESTAMP) AS valid_from,
    CAST(valid_to AS TIMESTAMP) AS valid_to
FROM leverage_tiers_frame
ORDER BY exchange, symbol, valid_from, tier
