-- funding_spreads of [$start, $end) straight from funding_rates, funding_predictions and basis (1h), in DuckDB:
-- the computation of core/spreads.py's hourly_rates + funding_spreads (pandas, kept as the reference), with
-- `spread_perps` (exchange, symbol, underlying, perp_rank: the perps in (exchange, symbol) order) registered.
-- Perps are joined and grouped on their rank (an integer), not on strings: a year of 300 perps is 2.6 M hours.
WITH perps AS MATERIALIZED (
    SELECT exchange, symbol, underlying, CAST(perp_rank AS INTEGER) AS perp_rank FROM spread_perps
),
pairs AS MATERIALIZED (
    -- every cross-venue pair on the same underlying, ordered once (a < b in (exchange, symbol) order)
    SELECT a.perp_rank AS rank_a, b.perp_rank AS rank_b
    FROM perps a JOIN perps b ON b.underlying = a.underlying AND b.exchange <> a.exchange AND a.perp_rank < b.perp_rank
),
settlements AS (
    -- an 8h settlement at $end + 7h still covers the window's last hour (spread_inputs_rates.sql)
    SELECT k.perp_rank, CAST(r.funding_ts AS TIMESTAMP) AS funding_ts, r.rate_per_hour,
        greatest(CAST(round_even(r.interval_h, 0) AS BIGINT), 1) AS hours
    FROM funding_rates r JOIN perps k USING (exchange, symbol)
    WHERE r.funding_ts > $start AND r.funding_ts < $end + INTERVAL 8 HOUR AND r.funding_ts IS NOT NULL
        AND r.interval_h IS NOT NULL AND NOT isnan(r.interval_h)
        AND r.rate_per_hour IS NOT NULL AND NOT isnan(r.rate_per_hour)
),
accrued AS (
    -- each settlement over the hours it accrued: k = 1..n hours back from it, floored to the hour
    SELECT perp_rank, rate_per_hour, date_trunc('hour', funding_ts - to_hours(k)) AS ts
    FROM (SELECT *, unnest(range(1, hours + 1)) AS k FROM settlements)
),
settled AS MATERIALIZED (
    SELECT perp_rank, ts, avg(rate_per_hour) AS rate_per_hour, false AS is_predicted
    FROM accrued
    WHERE ts >= $start AND ts < $end
    GROUP BY perp_rank, ts
),
predictions AS (
    SELECT k.perp_rank, CAST(p.ts AS TIMESTAMP) AS known_at, CAST(p.funding_ts AS TIMESTAMP) AS funding_ts,
        p.rate_per_hour
    FROM funding_predictions p JOIN perps k USING (exchange, symbol)
    WHERE p.ts >= $start - INTERVAL 8 HOUR AND p.ts < $end AND p.ts IS NOT NULL AND p.funding_ts IS NOT NULL
        AND p.rate_per_hour IS NOT NULL AND NOT isnan(p.rate_per_hour)
),
unsettled AS (
    -- the hours of every predicted perp that no settlement covers
    SELECT p.perp_rank, h.ts, h.ts + INTERVAL 1 HOUR AS hour_end
    FROM (SELECT DISTINCT perp_rank FROM predictions) p
    CROSS JOIN (SELECT unnest(range(CAST($start AS TIMESTAMP), CAST($end AS TIMESTAMP), INTERVAL 1 HOUR)) AS ts) h
    ANTI JOIN settled s ON s.perp_rank = p.perp_rank AND s.ts = h.ts
),
predicted AS (
    -- the last prediction known before the hour ended, for a settlement after the hour's start
    SELECT u.perp_rank, u.ts, p.rate_per_hour, true AS is_predicted
    FROM unsettled u
    ASOF JOIN predictions p ON p.perp_rank = u.perp_rank AND u.hour_end > p.known_at
    WHERE p.funding_ts > u.ts
),
basis_1h AS (
    SELECT k.perp_rank, b.ts, b.basis_bps
    FROM basis b JOIN perps k USING (exchange, symbol)
    WHERE b.timeframe = '1h' AND b.ts >= $start AND b.ts < $end
),
hourly AS MATERIALIZED (
    SELECT h.perp_rank, h.ts, h.rate_per_hour, h.is_predicted, b.basis_bps
    FROM (SELECT * FROM settled UNION ALL SELECT * FROM predicted) h
    LEFT JOIN basis_1h b ON b.perp_rank = h.perp_rank AND b.ts = h.ts
)
SELECT
    CAST(ka.underlying AS VARCHAR) AS underlying,
    CAST(ka.exchange AS VARCHAR) AS exchange_a,
    CAST(ka.symbol AS VARCHAR) AS symbol_a,
    CAST(kb.exchange AS VARCHAR) AS exchange_b,
    CAST(kb.symbol AS VARCHAR) AS symbol_b,
    CAST(a.ts AS TIMESTAMP) AS ts,
    CAST(a.rate_per_hour AS DOUBLE) AS rate_per_hour_a,
    CAST(b.rate_per_hour AS DOUBLE) AS rate_per_hour_b,
    CAST(a.rate_per_hour * 8760.0 AS DOUBLE) AS funding_apr_a,
    CAST(b.rate_per_hour * 8760.0 AS DOUBLE) AS funding_apr_b,
    CAST((a.rate_per_hour - b.rate_per_hour) * 8760.0 AS DOUBLE) AS funding_spread_apr,
    CAST(a.is_predicted AS BOOLEAN) AS is_predicted_a,
    CAST(b.is_predicted AS BOOLEAN) AS is_predicted_b,
    CAST(a.basis_bps AS DOUBLE) AS basis_bps_a,
    CAST(b.basis_bps AS DOUBLE) AS basis_bps_b,
    CAST(a.basis_bps - b.basis_bps AS DOUBLE) AS basis_spread_bps
FROM pairs p
JOIN hourly a ON a.perp_rank = p.rank_a
JOIN hourly b ON b.perp_rank = p.rank_b AND b.ts = a.ts
JOIN perps ka ON ka.perp_rank = p.rank_a
JOIN perps kb ON kb.perp_rank = p.rank_b
