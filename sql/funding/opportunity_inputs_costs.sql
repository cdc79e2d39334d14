-- The latest half-spreads of each perp and its spot leg (the 1m basis when present, else 1h).
SELECT exchange, symbol, spot_symbol, perp_half_spread_bps, spot_half_spread_bps
FROM basis
WHERE ts < $end
QUALIFY row_number() OVER (PARTITION BY exchange, symbol ORDER BY ts DESC, timeframe = '1m' DESC) = 1
