-- top_opportunities: the latest ranking, net of round-trip costs (walked on the captured books where both legs
-- have one, else fees and half-spreads: cost_source), with the capacity per leg.
SELECT rank, strategy, underlying, long_exchange || ' ' || long_symbol AS long_leg,
       short_exchange || ' ' || short_symbol AS short_leg, round(net_carry_apr * 100, 2) AS net_apr_pct,
       cost_source, round(entry_cost_bps, 1) AS cost_bps,
       round(capacity_usd / 1000, 0) || CASE WHEN capacity_capped THEN '+' ELSE '' END AS capacity_k_usd,
       round(capacity_net_carry_apr * 100, 2) AS apr_at_capacity_pct,
       round(break_even_h, 1) AS break_even_h, round(half_life_h, 1) AS half_life_h,
       round(same_sign_share, 2) AS same_sign
FROM opportunities
WHERE as_of = (SELECT max(as_of) FROM opportunities)
ORDER BY rank
LIMIT $limit
