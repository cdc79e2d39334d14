-- ohlcv_1d: daily bars of [$start, $end) resampled from ohlcv_1h (the same as from ohlcv_1m: an hour's
-- open/high/low already come from its real minutes). filled_minutes and minutes add up.
-- Cost (profiled on 1 M one-minute bars): the hash aggregation is everything, so it carries as few states
-- as it can: integer keys only (bucket, instrument_id), names joined from one small group per instrument
-- instead of two string states per bar, is_filled derived from the counts, and one arg_min for the open.
WITH bars AS (
    SELECT
        epoch_us(ts) // 86400000000 * 86400000000 AS bucket_us,
        instrument_id,
        -- filled hours sort after every real one: the first real hour's open, else the (carried) first one's
        arg_min(open, epoch_us(ts) + (is_filled::BIGINT << 62)) AS open,
        coalesce(max(high) FILTER (WHERE NOT is_filled), max(high)) AS high,
        coalesce(min(low) FILTER (WHERE NOT is_filled), min(low)) AS low,
        arg_max(close, ts) AS close,
        sum(volume) AS volume,
        sum(trade_count)::BIGINT AS trade_count,
        sum(filled_minutes)::BIGINT AS filled_minutes,
        sum(minutes)::BIGINT AS minutes
    FROM ohlcv_1h
    WHERE ts >= $start AND ts < $end
    GROUP BY bucket_us, instrument_id
),
names AS (
    -- instrument_id is 1:1 with exchange + symbol: a separate scan of three columns, not a CTE materialized twice
    SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol
    FROM ohlcv_1h
    WHERE ts >= $start AND ts < $end
    GROUP BY instrument_id
)
SELECT
    make_timestamp(b.bucket_us) AS ts,
    b.instrument_id,
    n.exchange,
    n.symbol,
    b.open,
    b.high,
    b.low,
    b.close,
    b.volume,
    b.trade_count,
    b.filled_minutes,
    b.minutes,
    b.filled_minutes = b.minutes AS is_filled
FROM bars AS b
JOIN names AS n USING (instrument_id)
