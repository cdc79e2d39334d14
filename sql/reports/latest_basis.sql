-- latest_basis: the newest hourly perp-vs-spot basis per venue and perp.
SELECT exchange, symbol, ts, round(basis_bps, 2) AS basis_bps, round(mark_index_bps, 2) AS mark_index_bps,
       round(spot_half_spread_bps, 2) AS spot_half_spread_bps, round(perp_half_spread_bps, 2) AS perp_half_spread_bps
FROM basis
WHERE timeframe = '1h'
QUALIFY row_number() OVER (PARTITION BY exchange, symbol ORDER BY ts DESC) = 1
ORDER BY exchange, symbol
