-- basis_bars: the bar closes of [$start, $end) where no quotes were recorded, as the basis' other source: real
-- (not padded) bars of ohlcv_1m for the 1m basis, of ohlcv_1h for the 1h basis, the venue's own 8h bars
-- (raw_ohlcv: imported 8h klines) for the 8h basis (ts = bar open = bucket start, as for the quotes; the close
-- is the bucket's last price).
SELECT exchange, symbol, ts, close
FROM ohlcv_1m
WHERE $timeframe = '1m' AND ts >= $start AND ts < $end AND NOT is_filled
UNION ALL
SELECT exchange, symbol, ts, close
FROM ohlcv_1h
WHERE $timeframe = '1h' AND ts >= $start AND ts < $end AND NOT is_filled
UNION ALL
SELECT exchange, symbol, ts, close
FROM raw_ohlcv
WHERE $timeframe = '8h' AND timeframe_s = 28800 AND ts >= $start AND ts < $end AND close > 0
