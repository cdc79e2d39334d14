-- indicators' input: 1h bars of [$start, $end) plus the $lookback_bars bars of each series before $start,
-- so each partition's values equal those computed on the whole history. The time bound (twice the
-- look-back in hours, room for gaps) lets DuckDB skip older row groups: the cost does not grow with history.
WITH before AS (
    SELECT exchange, symbol, ts, high, low, close
    FROM ohlcv_1h
    WHERE ts < $start AND ts >= make_timestamp(($start_ms - $lookback_bars::BIGINT * 7200000) * 1000)
    QUALIFY row_number() OVER (PARTITION BY exchange, symbol ORDER BY ts DESC) <= $lookback_bars
)
SELECT exchange, symbol, ts, high, low, close FROM before
UNION ALL
SELECT exchange, symbol, ts, high, low, close FROM ohlcv_1h WHERE ts >= $start AND ts < $end
ORDER BY exchange, symbol, ts
