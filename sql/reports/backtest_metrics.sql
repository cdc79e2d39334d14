-- backtest_metrics: the latest run of each strategy, how it sized its pairs (sizing, and its positions by what sized
-- them: capacity of the books, capital share, even split without a book) and the capital that left unused.
WITH latest AS (
    SELECT *
    FROM backtest_runs
    QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY created_at DESC) = 1
),
sized AS (
    SELECT run_id, string_agg(size_source || ' ' || n, ', ' ORDER BY size_source) AS size_source
    FROM (SELECT run_id, size_source, count(*) AS n FROM backtest_positions GROUP BY run_id, size_source)
    GROUP BY run_id
)
SELECT strategy, n_pairs, round(total_return * 100, 3) AS return_pct, round(annual_return * 100, 2) AS apr_pct,
       round(sharpe, 2) AS sharpe, round(max_drawdown * 100, 3) AS max_dd_pct, trade_count AS trades,
       round(avg_holding_h, 1) AS avg_hold_h, round(time_in_market, 2) AS in_market, sizing,
       coalesce(sized.size_source, '-') AS size_source, round(capital_unused_usd / 1e3, 1) AS unused_k_usd
FROM latest LEFT JOIN sized USING (run_id)
ORDER BY strategy
