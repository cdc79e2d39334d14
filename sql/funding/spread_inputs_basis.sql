-- Hourly basis of [$start, $end) for the basis differential.
SELECT exchange, symbol, ts, basis_bps FROM basis WHERE timeframe = '1h' AND ts >= $start AND ts < $end
