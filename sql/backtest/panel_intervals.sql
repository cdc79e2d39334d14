-- panel_intervals: each perp's funding-interval history (the interval in force at a settlement).
SELECT
    exchange,
    symbol,
    epoch_ms(valid_from) AS valid_from_ms,
    interval_h
FROM funding_intervals
WHERE interval_h > 0
ORDER BY exchange, symbol, valid_from
