-- ohlcv_1d: daily bars of [$start, $end) resampled from ohlcv_1h (the same as from ohlcv_1m: an hour's
-- open/high/low already come from its real minutes). filled_minutes and minutes add up.
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
    sum(filled_minutes)::BIGINT AS filled_minutes,
    sum(minutes)::BIGINT AS minutes,
    bool_and(is_filled) AS is_filled
FROM (
    SELECT *, (epoch_ms(ts) // 86400000) * 86400000 AS bucket_ms
    FROM ohlcv_1h
    WHERE ts >= $start AND ts < $end
)
GROUP BY bucket_ms, instrument_id  -- integer key: ~2.5x faster than the two strings
