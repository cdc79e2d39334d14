-- trader_positions: each pair leg's last landed position snapshot (the trader's units, the venue's, the mark).
SELECT pair, exchange, symbol, round(units, 6) AS units, round(venue_units, 6) AS venue_units,
       round(mark_price, 2) AS mark, ts
FROM positions
QUALIFY row_number() OVER (PARTITION BY pair, leg ORDER BY ts_ms DESC) = 1
ORDER BY pair, leg
LIMIT $limit
