-- funding_spreads: every cross-venue pair of perps per underlying, hour by hour (registered frame).
SELECT
    CAST(underlying AS VARCHAR) AS underlying,
    CAST(exchange_a AS VARCHAR) AS exchange_a,
    CAST(symbol_a AS VARCHAR) AS symbol_a,
    CAST(exchange_b AS VARCHAR) AS exchange_b,
    CAST(symbol_b AS VARCHAR) AS symbol_b,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(rate_per_hour_a AS DOUBLE) AS rate_per_hour_a,
    CAST(rate_per_hour_b AS DOUBLE) AS rate_per_hour_b,
    CAST(funding_apr_a AS DOUBLE) AS funding_apr_a,
    CAST(funding_apr_b AS DOUBLE) AS funding_apr_b,
    CAST(funding_spread_apr AS DOUBLE) AS funding_spread_apr,
    CAST(is_predicted_a AS BOOLEAN) AS is_predicted_a,
    CAST(is_predicted_b AS BOOLEAN) AS is_predicted_b,
    CAST(basis_bps_a AS DOUBLE) AS basis_bps_a,
    CAST(basis_bps_b AS DOUBLE) AS basis_bps_b,
    CAST(basis_spread_bps AS DOUBLE) AS basis_spread_bps
FROM spreads_frame
WHERE ts >= $start AND ts < $end
