-- indicators: the values computed in numpy (`indicator_values`, an Arrow table of the window's rows keyed by
-- instrument_id and epoch microseconds) with each series' exchange and symbol joined back from ohlcv_1h
-- (one small group per instrument, not two strings carried through the read, sort and compute).
WITH names AS (
    SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol
    FROM ohlcv_1h
    WHERE ts >= $start AND ts < $end
    GROUP BY instrument_id
)
SELECT
    n.exchange,
    n.symbol,
    make_timestamp(v.ts_us) AS ts,
    v.close,
    v.sma,
    v.ema,
    v.rsi,
    v.macd,
    v.macd_signal,
    v.macd_hist,
    v.bb_upper,
    v.bb_middle,
    v.bb_lower,
    v.atr
FROM indicator_values AS v
JOIN names AS n USING (instrument_id)
