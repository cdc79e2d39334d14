-- ohlcv_1m: one-minute bars of [$start, $end) per (exchange, symbol).
-- Built from raw_trades; a venue candle (raw_ohlcv, timeframe_s = 60) fills a minute without trades
-- (source = 'venue'). Empty minutes are explicit: the last close carried forward, zero volume,
-- source = 'filled', is_filled = true, including across partition boundaries. The last real close before
-- $start is the last real bar of [$start - $horizon_ms, $start): read from this table's earlier partitions
-- when $bars_from_ms = $start_ms (the hourly path: its hours load in order), or computed here from the raw
-- tables when $bars_from_ms = $start_ms - $horizon_ms (history runs: the raw tables hold those hours, loaded by
-- the month before's run or by this one, so the rows do not depend on which run went first; the same bars
-- either way, since this table's real bars are the raw tables' bars). Minutes are padded up to the window's
-- end, but never past $now_ms (the hour in progress is not padded into the future; its next run replaces the
-- padding) and at most $horizon_ms after the series' last real bar (a delisted or silent series stops being padded).
-- Buckets are integer epoch milliseconds: never time_bucket on TIMESTAMP_NS (it rounds first).
WITH trade_bars AS (
    -- grouped on the integer instrument_id (1:1 with exchange + symbol): integer keys hash ~2x faster
    SELECT
        instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol,
        (ts_ms // 60000) * 60000 AS bucket_ms,
        -- (ts_ms, trade_id) order as one HUGEINT, ts_ms * 2^64 + trade_id (exact for any BIGINT trade_id):
        -- ~2.5x faster than comparing the STRUCT (ts_ms, trade_id) on 5 M ticks
        arg_min(price, (ts_ms::HUGEINT << 64) + trade_id) AS open,
        max(price) AS high,
        min(price) AS low,
        arg_max(price, (ts_ms::HUGEINT << 64) + trade_id) AS close,
        sum(amount) AS volume,
        count(*) AS trade_count,
        -- the venue's quote amount where it gave one, else price x base amount (the same for linear and inverse)
        sum(CASE WHEN isfinite(cost) THEN cost ELSE price * amount END) AS quote_volume,
        coalesce(sum(amount) FILTER (WHERE side = 1), 0.0) AS taker_buy_volume
    FROM raw_trades
    WHERE ts >= make_timestamp($bars_from_ms * 1000) AND ts < $end AND price > 0 AND amount >= 0
    GROUP BY instrument_id, bucket_ms
),
venue_bars AS (
    SELECT v.instrument_id, v.exchange, v.symbol, v.ts_ms AS bucket_ms, v.open, v.high, v.low, v.close, v.volume,
        -- what the candle carries (klines: count, quote and taker-buy volume); unknown: no count, NULL volumes
        CASE WHEN isfinite(v.trade_count) THEN v.trade_count::BIGINT ELSE 0 END AS trade_count,
        CASE WHEN isfinite(v.quote_volume) THEN v.quote_volume END AS quote_volume,
        CASE WHEN isfinite(v.taker_buy_volume) THEN v.taker_buy_volume END AS taker_buy_volume
    FROM raw_ohlcv AS v
    ANTI JOIN trade_bars AS t ON t.instrument_id = v.instrument_id AND t.bucket_ms = v.ts_ms
    WHERE v.timeframe_s = 60 AND v.ts >= make_timestamp($bars_from_ms * 1000) AND v.ts < $end AND v.close > 0
),
all_bars AS (
    SELECT *, 'trades' AS source FROM trade_bars
    UNION ALL BY NAME
    SELECT *, 'venue' AS source FROM venue_bars
),
real_bars AS (
    SELECT * FROM all_bars WHERE bucket_ms >= $start_ms
),
previous AS (
    -- one of the two is empty: the table before $bars_from_ms, or the raw tables' bars before $start
    SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol,
        arg_max(close, ts_ms) AS prev_close, max(ts_ms) AS prev_ms
    FROM (
        SELECT instrument_id, exchange, symbol, close, epoch_ms(ts) AS ts_ms
        FROM ohlcv_1m
        WHERE ts >= make_timestamp(($start_ms - $horizon_ms) * 1000) AND ts < make_timestamp($bars_from_ms * 1000)
            AND NOT is_filled
        UNION ALL
        SELECT instrument_id, exchange, symbol, close, bucket_ms AS ts_ms FROM all_bars WHERE bucket_ms < $start_ms
    )
    GROUP BY instrument_id
),
bounds AS (
    SELECT
        instrument_id, coalesce(s.exchange, p.exchange) AS exchange, coalesce(s.symbol, p.symbol) AS symbol,
        p.prev_close, p.prev_ms,
        CASE WHEN p.prev_ms IS NULL THEN s.first_ms ELSE $start_ms END AS from_ms,
        -- no minute past the horizon after the series' last real bar is kept: none is generated (a series
        -- silent for a long window, e.g. months of history after a delisting, would be a grid of them)
        least(least($end_ms, $now_ms) - 60000, coalesce(s.last_ms, p.prev_ms) + $horizon_ms) AS to_ms
    FROM (
        SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol, min(bucket_ms) AS first_ms,
            max(bucket_ms) AS last_ms
        FROM real_bars GROUP BY instrument_id
    ) AS s
    FULL OUTER JOIN previous AS p USING (instrument_id)
),
grid AS (
    SELECT instrument_id, exchange, symbol, prev_close, prev_ms,
        unnest(generate_series(from_ms, to_ms, 60000)) AS bucket_ms
    FROM bounds
    WHERE to_ms IS NOT NULL AND from_ms <= to_ms
),
joined AS (
    SELECT
        g.instrument_id, g.exchange, g.symbol, g.bucket_ms, r.open, r.high, r.low, r.close, r.volume, r.trade_count,
        r.quote_volume, r.taker_buy_volume, r.source,
        coalesce(
            last_value(r.close IGNORE NULLS) OVER series, g.prev_close
        ) AS fill_close,
        coalesce(
            last_value(CASE WHEN r.close IS NOT NULL THEN g.bucket_ms END IGNORE NULLS) OVER series, g.prev_ms
        ) AS last_real_ms
    FROM grid AS g
    LEFT JOIN real_bars AS r ON r.instrument_id = g.instrument_id AND r.bucket_ms = g.bucket_ms
    WINDOW series AS (PARTITION BY g.instrument_id ORDER BY g.bucket_ms ROWS UNBOUNDED PRECEDING)
)
SELECT
    make_timestamp(j.bucket_ms * 1000) AS ts,
    j.instrument_id,
    j.exchange,
    j.symbol,
    coalesce(j.open, j.fill_close) AS open,
    coalesce(j.high, j.fill_close) AS high,
    coalesce(j.low, j.fill_close) AS low,
    coalesce(j.close, j.fill_close) AS close,
    coalesce(j.volume, 0.0) AS volume,
    coalesce(j.trade_count, 0)::BIGINT AS trade_count,
    CASE WHEN j.source IS NULL THEN 0.0 ELSE j.quote_volume END AS quote_volume,
    CASE WHEN j.source IS NULL THEN 0.0 ELSE j.taker_buy_volume END AS taker_buy_volume,
    coalesce(j.source, 'filled') AS source,
    j.source IS NULL AS is_filled
FROM joined AS j
WHERE j.fill_close IS NOT NULL
  AND j.bucket_ms - j.last_real_ms <= $horizon_ms
