-- bars_from_bars: ohlcv_8h and ohlcv_1d, bars of $bucket_us microseconds over [$start, $end) resampled from
-- the next finer bar table (`finer_bars`, a temporary view the asset points at ohlcv_1h or ohlcv_8h): the
-- same as from ohlcv_1m (a finer bar's open/high/low already come from its real minutes). filled_minutes
-- and minutes add up. Buckets are integer microseconds aligned on the epoch (8h bars at 00, 08, 16 UTC).
WITH bars AS (
    SELECT
        epoch_us(ts) // $bucket_us * $bucket_us AS bucket_us,
        instrument_id,
        -- filled bars sort after every real one: the first real bar's open, else the (carried) first one's
        arg_min(open, epoch_us(ts) + (is_filled::BIGINT << 62)) AS open,
        coalesce(max(high) FILTER (WHERE NOT is_filled), max(high)) AS high,
        coalesce(min(low) FILTER (WHERE NOT is_filled), min(low)) AS low,
        arg_max(close, ts) AS close,
        sum(volume) AS volume,
        sum(trade_count)::BIGINT AS trade_count,
        sum(quote_volume) AS quote_volume,
        sum(taker_buy_volume) AS taker_buy_volume,
        sum(filled_minutes)::BIGINT AS filled_minutes,
        sum(minutes)::BIGINT AS minutes
    FROM finer_bars
    WHERE ts >= $start AND ts < $end
    GROUP BY bucket_us, instrument_id
),
names AS (
    -- instrument_id is 1:1 with exchange + symbol: a separate scan of three columns, not a CTE materialized twice
    SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol
    FROM finer_bars
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
