"""Checks on the market tables: unique keys and OHLC consistency (blocking), gaps and coverage (warn),
freshness of the newest partition, indicator ranges."""

from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
)
from dagster_duckdb import DuckDBResource

from ...core.sql import table_exists
from ...core.tables import table
from ..common.checks import (
    build_condition_check,
    build_freshness_check,
    build_unique_key_check,
    check_window,
    no_data,
    window_check,
    window_clause,
)
from ..partitions import HOURLY
from ..resources import POOL, DataDirResource, warehouse_connection
from .assets import indicators, liquidations, ohlcv_1d, ohlcv_1h, ohlcv_1m, ohlcv_5m, ohlcv_8h, open_interest

BAR_ASSETS = {
    "ohlcv_1m": ohlcv_1m,
    "ohlcv_5m": ohlcv_5m,
    "ohlcv_1h": ohlcv_1h,
    "ohlcv_8h": ohlcv_8h,
    "ohlcv_1d": ohlcv_1d,
}
INCONSISTENT_BAR = (
    "NOT (low <= least(open, close) AND greatest(open, close) <= high AND low > 0 AND volume >= 0"
    " AND isfinite(open + high + low + close + volume))"
)
MAX_GAP_MINUTES = 15  # longest stretch without a real bar that still passes (sparse spot pairs have gaps)

_unique = [
    build_unique_key_check(asset, name, table(name).key, asset.partitions_def) for name, asset in BAR_ASSETS.items()
]
_consistent = [
    build_condition_check(
        asset,
        f"{name}_is_consistent",
        name,
        INCONSISTENT_BAR,
        f"Every {name} bar has low <= open, close <= high, a positive low and non-negative volume.",
        asset.partitions_def,
    )
    for name, asset in BAR_ASSETS.items()
]
indicators_has_unique_keys = build_unique_key_check(indicators, "indicators", table("indicators").key, HOURLY)
indicators_rsi_in_range = build_condition_check(
    indicators,
    "indicators_rsi_in_range",
    "indicators",
    "rsi < 0 OR rsi > 100 OR bb_lower > bb_upper OR atr < 0",
    "RSI within [0, 100], Bollinger lower <= upper, ATR >= 0 (NaN during warm-up is allowed).",
    HOURLY,
    severity=AssetCheckSeverity.WARN,
    blocking=False,
)

open_interest_has_unique_keys = build_unique_key_check(
    open_interest, "open_interest", table("open_interest").key, HOURLY
)
open_interest_is_valid = build_condition_check(
    open_interest,
    "open_interest_is_valid",
    "open_interest",
    "samples < 1 OR oi_amount < 0 OR oi_value < 0 OR oi_amount_low > oi_amount_high",
    "Every hour holds at least one value; open interest is never negative, its low never above its high.",
    HOURLY,
)
liquidations_has_unique_keys = build_unique_key_check(liquidations, "liquidations", table("liquidations").key, HOURLY)
liquidations_is_valid = build_condition_check(
    liquidations,
    "liquidations_is_valid",
    "liquidations",
    "prints < 1 OR long_prints + short_prints > prints OR long_notional < 0 OR short_notional < 0"
    " OR NOT isfinite(long_notional + short_notional)",
    "Every row counts at least one print, long + short prints at most all of them, notionals finite and >= 0.",
    HOURLY,
)

GAPS_SQL = """
WITH real AS (
    SELECT exchange, symbol, ts, epoch_ms(ts) AS ms,
        epoch_ms(ts) - lag(epoch_ms(ts)) OVER (PARTITION BY exchange, symbol ORDER BY ts) AS step_ms
    FROM ohlcv_1m WHERE NOT is_filled AND {where}
),
steps AS (
    SELECT exchange, symbol, count(*) AS real_minutes, max(step_ms) // 60000 - 1 AS longest_gap_minutes,
        min(ts) AS first_ts, max(ts) AS last_ts
    FROM real GROUP BY exchange, symbol
),
series AS (SELECT exchange, symbol, count(*) AS minutes FROM ohlcv_1m WHERE {where} GROUP BY exchange, symbol)
-- a series whose window holds only filled minutes is one gap as long as the window, never a pass on nothing
SELECT exchange, symbol, coalesce(steps.real_minutes, 0) AS real_minutes,
    CASE WHEN steps.real_minutes IS NULL THEN series.minutes ELSE steps.longest_gap_minutes END AS longest_gap_minutes,
    steps.first_ts, steps.last_ts
FROM series LEFT JOIN steps USING (exchange, symbol) ORDER BY exchange, symbol
"""
COVERAGE_SQL = """
SELECT strftime(date_trunc('hour', ts), '%Y-%m-%d %H:00') AS hour, exchange, symbol,
    round(100.0 * count(*) FILTER (WHERE NOT is_filled) / 60, 1) AS coverage_pct
FROM ohlcv_1m WHERE {where}
GROUP BY ALL ORDER BY hour DESC, exchange, symbol LIMIT 200
"""


@window_check(
    asset=ohlcv_1m,
    description=(
        f"Per series, the longest stretch without a real (trade or venue) bar is at most {MAX_GAP_MINUTES} "
        "minutes; metadata gives the coverage (% of minutes with real data) per partition and series."
    ),
    pool=POOL,
    partitions_def=HOURLY,
)
def ohlcv_1m_has_no_gaps(
    context: AssetCheckExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
) -> AssetCheckResult:
    window = check_window(context)
    where, params = window_clause(window)
    with warehouse_connection(duckdb) as conn:
        if not table_exists(conn, "ohlcv_1m"):
            return no_data("table ohlcv_1m does not exist", window)
        # {where} is built by window_clause from a checked identifier; values stay bound parameters.
        gaps = conn.execute(GAPS_SQL.format(where=where), params).df()
        coverage = conn.execute(COVERAGE_SQL.format(where=where), params).df()
        totals = conn.execute(
            f"SELECT count(*) FILTER (WHERE NOT is_filled), count(*) FROM ohlcv_1m WHERE {where}", params
        ).fetchone()
    if not totals[1]:
        return no_data("0 bars of ohlcv_1m", window, series=0, coverage_pct=0.0)
    longest = int(gaps["longest_gap_minutes"].fillna(0).max()) if len(gaps) else 0
    metadata: dict[str, Any] = {
        "longest_gap_minutes": longest,
        "max_gap_minutes": MAX_GAP_MINUTES,
        "coverage_pct": round(100.0 * totals[0] / totals[1], 2) if totals[1] else 0.0,
        "series": len(gaps),
        "rows_checked": int(totals[1]),
        "gaps_by_series": MetadataValue.md(gaps.to_markdown(index=False)) if len(gaps) else "none",
        "coverage_by_partition": MetadataValue.md(coverage.to_markdown(index=False)) if len(coverage) else "none",
    }
    return AssetCheckResult(passed=longest <= MAX_GAP_MINUTES, severity=AssetCheckSeverity.WARN, metadata=metadata)


# Every closed hour of 1m bars is built (live: within 30 minutes after it ends; WARN).
ohlcv_1m_is_fresh = build_freshness_check(ohlcv_1m, deadline_minutes=30)
MARKET_CHECKS = [
    *_unique,
    *_consistent,
    indicators_has_unique_keys,
    indicators_rsi_in_range,
    ohlcv_1m_has_no_gaps,
    ohlcv_1m_is_fresh,
    open_interest_has_unique_keys,
    open_interest_is_valid,
    liquidations_has_unique_keys,
    liquidations_is_valid,
]
