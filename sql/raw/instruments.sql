-- instruments: the registry (instruments.json), one row per (exchange, symbol), from a registered frame.
SELECT
    id AS instrument_id, exchange, symbol, type, base, quote, settle, underlying, multiplier,
    contract_size, venue_symbol, inverse,
    CASE WHEN expiry_ms IS NULL THEN NULL ELSE make_timestamp(expiry_ms * 1000) END AS expiry
FROM registry_frame
ORDER BY instrument_id
