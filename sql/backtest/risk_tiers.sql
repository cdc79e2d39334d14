-- The leverage tiers in force at the risk book's time ($as_of): what core.risk.apply_tiers reads.
SELECT exchange, symbol, tier, min_notional, max_notional, mmr, maintenance_amount, max_leverage, valid_from, valid_to
FROM leverage_tiers
WHERE valid_from <= $as_of AND (valid_to IS NULL OR valid_to > $as_of)
