-- bars_from_1m: ohlcv_5m and ohlcv_1h, bars of $bucket_us microseconds over [$start, $end) resampled from
-- ohlcv_1m in SQL (integer microsecond buckets). One statement for both: they differ only in the bar length.
-- Open/high/low come from the minutes that had data (filled minutes only when the whole bar is filled,
-- then they carry the previous close); close is the last minute's close (a filled minute carries the last
-- real close, so it is the same); volume and trade_count add up; filled_minutes counts padded minutes.
-- Cost (profiled on 1 M one-minute bars): the hash aggregation is everything, so it carries as few states
-- as it can: integer keys only (bucket, instrument_id), names joined from one small group per instrument
-- instead of two string states per bar, is_filled derived from the counts, and one arg_min for the open.
WITH bars AS (
    SELECT
        epoch_us(ts) // $bucket_us * $bucket_us AS bucket_us,
        instrument_id,
        -- filled minutes sort after every real one: the first real minute's open, else the (carried) first one's
        arg_min(open, epoch_us(ts) + (is_filled::BIGINT << 62)) AS open,
        coalesce(max(high) FILTER (WHERE NOT is_filled), max(high)) AS high,
        coalesce(min(low) FILTER (WHERE NOT is_filled), min(low)) AS low,
        arg_max(close, ts) AS close,
        sum(volume) AS volume,
        sum(trade_count)::BIGINT AS trade_count,
        sum(quote_volume) AS quote_volume,
        sum(taker_buy_volume) AS taker_buy_volume,
        count(*) FILTER (WHERE is_filled) AS filled_minutes,
        count(*) AS minutes
    FROM ohlcv_1m
    WHERE ts >= $start AND ts < $end
    GROUP BY bucket_us, instrument_id
),
names AS (
    -- instrument_id is 1:1 with exchange + symbol: a separate scan of three columns, not a CTE materialized twice
    SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol
    FROM ohlcv_1m
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
    b.quote_volume,
    b.taker_buy_volume,
    b.filled_minutes,
    b.minutes,
    b.filled_minutes = b.minutes AS is_filled
FROM bars AS b
JOIN names AS n USING (instrument_id)
