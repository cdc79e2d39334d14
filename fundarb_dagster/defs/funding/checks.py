"""Asset checks of the funding domain. Blocking where bad data must not reach opportunities and alerts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check
from dagster_duckdb import DuckDBResource

from ...core.sql import table_exists
from ...core.tables import table
from ..common.checks import no_data
from ..resources import warehouse_connection
from .assets import basis, funding_intervals, funding_predictions, funding_rates, funding_spreads, opportunities

# 2 x the longest plausible interval: funding_rates lagging the stream by more means settlements are missing.
FRESHNESS_LAG_H = 16


def _unique_check(asset: Any, table: str, key: Sequence[str], blocking: bool) -> AssetChecksDefinition:
    name = f"{table}_has_unique_keys"

    @asset_check(
        asset=asset, name=name, blocking=blocking, description=f"No two rows of {table} share ({', '.join(key)})."
    )
    def _check(duckdb: DuckDBResource) -> AssetCheckResult:
        with warehouse_connection(duckdb, read_only=True) as conn:
            if not table_exists(conn, table):
                return no_data(f"table {table} does not exist")
            cols = ", ".join(key)
            dupes = conn.execute(
                f"SELECT count(*) FROM (SELECT {cols} FROM {table} GROUP BY {cols} HAVING count(*) > 1)"
            ).fetchone()[0]
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if not rows:
            return no_data(f"0 rows of {table}")
        return AssetCheckResult(
            passed=dupes == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"rows": int(rows), "duplicate_keys": int(dupes)},
        )

    return _check


funding_rates_has_unique_keys = _unique_check(funding_rates, "funding_rates", table("funding_rates").key, True)
funding_predictions_has_unique_keys = _unique_check(
    funding_predictions, "funding_predictions", table("funding_predictions").key, True
)
basis_has_unique_keys = _unique_check(basis, "basis", table("basis").key, True)
funding_spreads_has_unique_keys = _unique_check(funding_spreads, "funding_spreads", table("funding_spreads").key, True)
opportunities_has_unique_keys = _unique_check(opportunities, "opportunities", table("opportunities").key, False)


@asset_check(
    asset=funding_intervals,
    blocking=True,
    description="Spans of one (exchange, symbol) do not overlap, and every interval is positive.",
)
def funding_intervals_has_no_overlaps(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "funding_intervals"):
            return no_data("table funding_intervals does not exist")
        spans = conn.execute("SELECT count(*) FROM funding_intervals").fetchone()[0]
        if not spans:
            return no_data("0 spans in funding_intervals")
        bad = conn.execute(
            "SELECT count(*) FROM (SELECT interval_h, valid_from, valid_to, lead(valid_from) OVER "
            "(PARTITION BY exchange, symbol ORDER BY valid_from) AS next_from FROM funding_intervals) "
            "WHERE NOT interval_h > 0 OR (next_from IS NOT NULL AND valid_to IS DISTINCT FROM next_from) "
            "OR (next_from IS NULL AND valid_to IS NOT NULL)"
        ).fetchone()[0]
    return AssetCheckResult(passed=bad == 0, metadata={"bad_spans": int(bad), "rows_checked": int(spans)})


@asset_check(
    asset=funding_rates,
    blocking=True,
    description=(
        "Settled rates lie within the venue's cap and floor (from funding_intervals, where known), every row "
        "has a known interval, and no |rate| reaches 100% (a units error)."
    ),
)
def funding_rates_within_caps(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "funding_rates") or not table_exists(conn, "funding_intervals"):
            return no_data("funding_rates or funding_intervals does not exist")
        row = conn.execute(
            """
            SELECT
                count(*) FILTER (WHERE i.cap IS NOT NULL AND r.funding_rate > i.cap + 1e-12) AS above_cap,
                count(*) FILTER (WHERE i.floor IS NOT NULL AND r.funding_rate < i.floor - 1e-12) AS below_floor,
                count(*) FILTER (WHERE r.interval_h IS NULL OR isnan(r.interval_h)) AS no_interval,
                count(*) FILTER (WHERE abs(r.funding_rate) >= 1) AS not_a_fraction,
                count(*) FILTER (WHERE i.cap IS NOT NULL) AS with_cap,
                count(*) AS rows
            FROM funding_rates r
            ASOF LEFT JOIN funding_intervals i
              ON r.exchange = i.exchange AND r.symbol = i.symbol AND r.funding_ts + INTERVAL 15 MINUTE >= i.valid_from
            """
        ).fetchone()
    above, below, no_interval, not_fraction, with_cap, rows = (int(v) for v in row)
    if not rows:
        return no_data("0 settlements in funding_rates")
    return AssetCheckResult(
        passed=above == below == no_interval == not_fraction == 0,
        metadata={
            "rows": rows,
            "rows_with_known_cap": with_cap,
            "above_cap": above,
            "below_floor": below,
            "without_interval": no_interval,
            "abs_rate_ge_1": not_fraction,
        },
    )


@asset_check(
    asset=funding_rates,
    description=f"The latest settlement is within {FRESHNESS_LAG_H}h of the latest streamed funding value.",
)
def funding_rates_is_fresh(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "funding_rates") or not table_exists(conn, "raw_funding"):
            return no_data("funding_rates or raw_funding does not exist")
        latest_rate, latest_stream = conn.execute(
            "SELECT (SELECT max(funding_ts) FROM funding_rates), (SELECT max(ts) FROM raw_funding)"
        ).fetchone()
    if latest_stream is None:
        return no_data("no streamed funding value in raw_funding")
    if latest_rate is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description="funding was streamed but no settlement is in funding_rates",
            metadata={"latest_stream": str(latest_stream)},
        )
    lag_h = (latest_stream - latest_rate).total_seconds() / 3600
    return AssetCheckResult(
        passed=lag_h <= FRESHNESS_LAG_H,
        severity=AssetCheckSeverity.WARN,
        metadata={"lag_h": float(lag_h), "latest_settlement": str(latest_rate), "latest_stream": str(latest_stream)},
    )


@asset_check(asset=basis, description="Half-spreads are never negative (a crossed book must not look like a rebate).")
def basis_has_nonnegative_half_spreads(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "basis"):
            return no_data("table basis does not exist")
        bad, rows = conn.execute(
            "SELECT count(*) FILTER (WHERE perp_half_spread_bps < 0 OR spot_half_spread_bps < 0), count(*) FROM basis"
        ).fetchone()
    if not rows:
        return no_data("0 rows of basis")
    return AssetCheckResult(passed=bad == 0, metadata={"negative_half_spreads": int(bad), "rows_checked": int(rows)})


FUNDING_CHECKS = [
    funding_intervals_has_no_overlaps,
    funding_rates_has_unique_keys,
    funding_rates_within_caps,
    funding_rates_is_fresh,
    funding_predictions_has_unique_keys,
    basis_has_unique_keys,
    basis_has_nonnegative_half_spreads,
    funding_spreads_has_unique_keys,
    opportunities_has_unique_keys,
]
