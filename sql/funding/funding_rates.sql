-- funding_rates: one row per settlement, normalised with the interval in force (from the registered frame).
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(funding_ts AS TIMESTAMP) AS funding_ts,
    CAST(funding_ts_raw AS TIMESTAMP) AS funding_ts_raw,
    CAST(funding_rate AS DOUBLE) AS funding_rate,
    CAST(interval_h AS DOUBLE) AS interval_h,
    CAST(rate_per_hour AS DOUBLE) AS rate_per_hour,
    CAST(funding_apr AS DOUBLE) AS funding_apr,
    CAST(predicted_rate AS DOUBLE) AS predicted_rate,
    CAST(predicted_at AS TIMESTAMP) AS predicted_at,
    CAST(forecast_error AS DOUBLE) AS forecast_error,
    CAST(mark_price AS DOUBLE) AS mark_price,
    CAST(index_price AS DOUBLE) AS index_price
FROM rates_frame
WHERE funding_ts >= $start AND funding_ts < $end
