-- bars_with_venue: a bar table's rows of [$start, $end): the bars resampled from the finer table (`resampled`,
-- a temporary table the asset fills first; source = its name) and the venue's own bars of this timeframe
-- (raw_ohlcv, timeframe_s = $timeframe_s, e.g. imported 1h/8h/1d klines; source = 'venue'). A resampled bar
-- with a real minute wins; a venue bar replaces one that is only padding (every minute filled). A venue bar
-- counts its whole length as real minutes.
WITH venue AS (
    SELECT ts, instrument_id, exchange, symbol, open, high, low, close, volume,
        CASE WHEN isfinite(trade_count) THEN trade_count::BIGINT ELSE 0 END AS trade_count,
        CASE WHEN isfinite(quote_volume) THEN quote_volume END AS quote_volume,
        CASE WHEN isfinite(taker_buy_volume) THEN taker_buy_volume END AS taker_buy_volume,
        0::BIGINT AS filled_minutes, ($timeframe_s // 60)::BIGINT AS minutes, false AS is_filled, 'venue' AS source
    FROM raw_ohlcv
    WHERE timeframe_s = $timeframe_s AND ts >= $start AND ts < $end AND close > 0
),
real_resampled AS (
    SELECT instrument_id, ts FROM resampled WHERE NOT is_filled
)
SELECT r.*, $finer AS source
FROM resampled AS r
WHERE NOT r.is_filled OR NOT EXISTS (
    SELECT 1 FROM venue AS v WHERE v.instrument_id = r.instrument_id AND v.ts = r.ts
)
UNION ALL BY NAME
SELECT v.*
FROM venue AS v
ANTI JOIN real_resampled AS r ON r.instrument_id = v.instrument_id AND r.ts = v.ts
