-- opportunities: ranked carry trades as of the latest data (registered frame).
SELECT
    CAST(as_of AS TIMESTAMP) AS as_of,
    CAST(strategy AS VARCHAR) AS strategy,
    CAST(underlying AS VARCHAR) AS underlying,
    CAST(long_exchange AS VARCHAR) AS long_exchange,
    CAST(long_symbol AS VARCHAR) AS long_symbol,
    CAST(short_exchange AS VARCHAR) AS short_exchange,
    CAST(short_symbol AS VARCHAR) AS short_symbol,
    CAST(current_apr AS DOUBLE) AS current_apr,
    CAST(mean_apr AS DOUBLE) AS mean_apr,
    CAST(expected_carry_apr AS DOUBLE) AS expected_carry_apr,
    CAST(entry_cost_bps AS DOUBLE) AS entry_cost_bps,
    CAST(borrow_apr AS DOUBLE) AS borrow_apr,
    CAST(net_carry_apr AS DOUBLE) AS net_carry_apr,
    CAST(horizon_h AS INTEGER) AS horizon_h,
    CAST(break_even_h AS DOUBLE) AS break_even_h,
    CAST(ar1_phi AS DOUBLE) AS ar1_phi,
    CAST(half_life_h AS DOUBLE) AS half_life_h,
    CAST(same_sign_share AS DOUBLE) AS same_sign_share,
    CAST(n_obs AS INTEGER) AS n_obs,
    CAST(rank AS INTEGER) AS rank
FROM opportunities_frame
ORDER BY rank
