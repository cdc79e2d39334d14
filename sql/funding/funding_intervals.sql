-- funding_intervals: the interval history per (exchange, symbol) from the frame the asset registered.
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(valid_from AS TIMESTAMP) AS valid_from,
    CAST(valid_to AS TIMESTAMP) AS valid_to,
    CAST(interval_h AS DOUBLE) AS interval_h,
    CAST(cap AS DOUBLE) AS cap,
    CAST(floor AS DOUBLE) AS floor,
    CAST(source AS VARCHAR) AS source
FROM intervals_frame
ORDER BY exchange, symbol, valid_from
