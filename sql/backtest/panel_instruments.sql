-- panel_instruments: leg kind, underlying and price multiplier (1000PEPE quotes 1000 PEPE) per market.
SELECT exchange, symbol, type, underlying, multiplier
FROM instruments
