-- panel_bars_8h: 8-hour bars known at their close (open + 8h) whose open is in [$start, $end), from ohlcv_8h,
-- for the 8 hours in which an instrument has no hourly bar (history imported as 8h klines only): the panel's
-- hourly grid carries their close forward. high/low bound the reference price within the bar.
SELECT b.exchange, b.symbol, epoch_ms(b.ts) + 28800000 AS ts_ms, b.close AS bar_close, b.high AS bar_high,
    b.low AS bar_low
FROM ohlcv_8h AS b
ANTI JOIN (
    SELECT DISTINCT instrument_id, epoch_us(ts) // 28800000000 AS bucket
    FROM ohlcv_1h
    WHERE ts >= $start AND ts < $end
) AS c ON c.instrument_id = b.instrument_id AND c.bucket = epoch_us(b.ts) // 28800000000
WHERE b.ts >= $start AND b.ts < $end
