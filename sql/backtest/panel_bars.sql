-- panel_bars: hourly bars known at their close (open + 1h) whose open is in [$start, $end), from ohlcv_1h.
-- close is the mid where no quotes were recorded; high/low bound the reference price within the hour.
SELECT
    exchange,
    symbol,
    epoch_ms(ts) + 3600000 AS ts_ms,
    close AS bar_close,
    high AS bar_high,
    low AS bar_low
FROM ohlcv_1h
WHERE ts >= $start AND ts < $end
