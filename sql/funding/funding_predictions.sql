-- funding_predictions: point-in-time predicted rates (ts = when known), from the frame the asset registered.
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(funding_ts AS TIMESTAMP) AS funding_ts,
    CAST(predicted_rate AS DOUBLE) AS predicted_rate,
    CAST(next_predicted_rate AS DOUBLE) AS next_predicted_rate,
    CAST(interval_h AS DOUBLE) AS interval_h,
    CAST(rate_per_hour AS DOUBLE) AS rate_per_hour,
    CAST(predicted_apr AS DOUBLE) AS predicted_apr,
    CAST(mark_price AS DOUBLE) AS mark_price,
    CAST(index_price AS DOUBLE) AS index_price
FROM predictions_frame
WHERE ts >= $start AND ts < $end
