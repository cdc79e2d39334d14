-- opportunity_as_of: the last hour with carry data. A settlement at T pays for the hour before T; a prediction
-- known at t is the rate of the hour containing t. NULL when neither table has rows.
SELECT greatest(
    (SELECT max(funding_ts) - INTERVAL 1 HOUR FROM funding_rates),
    (SELECT date_trunc('hour', max(ts)) FROM funding_predictions)
) AS as_of
