-- instruments: the registry (instruments.json), one row per (exchange, symbol), from a registered frame.
SELECT
    id AS instrument_id, exchange, symbol, type, base, quote, settle, underlying, multiplier,
    contract_size, venue_symbol
FROM registry_frame
ORDER BY instrument_id
