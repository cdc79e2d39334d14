-- panel_quotes: last hourly quotes per perp and spot leg from basis (timeframe 1h, ts = bucket start, so the
-- values are known at ts + 1h). The reference price is the mark, on hyperliquid the oracle (index) price.
-- Only quoted rows: a basis row from bar closes (source = 'bars') holds the bars the panel reads already.
SELECT
    exchange,
    symbol,
    epoch_ms(ts) + 3600000 AS ts_ms,
    perp_mid AS mid,
    perp_half_spread_bps / 10000.0 AS half_spread,
    CASE WHEN exchange = 'hyperliquid' THEN coalesce(index_price, mark_price)
         ELSE coalesce(mark_price, index_price) END AS ref
FROM basis
WHERE timeframe = '1h' AND source = 'quotes' AND ts >= $start AND ts < $end
UNION ALL
SELECT
    exchange,
    spot_symbol AS symbol,
    epoch_ms(ts) + 3600000 AS ts_ms,
    spot_mid AS mid,
    spot_half_spread_bps / 10000.0 AS half_spread,
    CAST(NULL AS DOUBLE) AS ref
FROM basis
WHERE timeframe = '1h' AND source = 'quotes' AND ts >= $start AND ts < $end AND spot_symbol IS NOT NULL
