-- The share of funding_spreads' hours in [$start, $end) where either venue's rate is a prediction (metadata).
SELECT avg(CAST(is_predicted_a OR is_predicted_b AS DOUBLE)) AS share
FROM funding_spreads
WHERE ts >= $start AND ts < $end
