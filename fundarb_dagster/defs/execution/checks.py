"""Checks of the execution domain: unique keys of the landed tables (a record landed again after a restart
must not count twice), and the funding the venue booked equal to the model (blocking: a mismatch must be
looked at before the numbers are trusted)."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity
from dagster_duckdb import DuckDBResource

from ...core.sql import table_exists
from ...core.tables import EXECUTION_TABLES
from ..common.checks import (
    build_condition_check,
    build_unique_key_check,
    check_window,
    no_data,
    window_check,
    window_clause,
)
from ..partitions import HOURLY
from ..resources import POOL, warehouse_connection
from . import assets

UNIQUE_KEY_CHECKS = [
    build_unique_key_check(getattr(assets, name), name, EXECUTION_TABLES[name].key, HOURLY) for name in assets.LANDED
]
fills_are_priced = build_condition_check(
    assets.fills,
    "fills_are_priced",
    "fills",
    "NOT (price > 0 AND isfinite(price) AND amount > 0 AND isfinite(amount) AND side IN (-1, 1))",
    "Every fill has a positive finite price and amount and a side.",
    HOURLY,
)


@window_check(
    asset=assets.funding_reconciliation,
    name="funding_reconciliation_matches_the_venue",
    description="Every settlement's booked funding equals the model's within the tolerance (a cent by default); "
    "a payment whose settled rate is not loaded yet is pending, not judged.",
    blocking=True,
    pool=POOL,
    partitions_def=HOURLY,
)
def funding_reconciliation_matches_the_venue(
    context: AssetCheckExecutionContext, duckdb: DuckDBResource
) -> AssetCheckResult:
    window = check_window(context)
    where, params = window_clause(window, "funding_ts")
    with warehouse_connection(duckdb) as conn:
        if not table_exists(conn, "funding_reconciliation"):
            return no_data("table funding_reconciliation does not exist", window, settlements=0)
        bad, total, worst = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'mismatch'), count(*) FILTER (WHERE status <> 'pending'), "
            "coalesce(max(abs(difference_usd)) FILTER (WHERE status <> 'pending'), 0) "
            f"FROM funding_reconciliation WHERE {where}",
            params,
        ).fetchone()
        why = conn.execute(
            f"SELECT explanation, count(*) FROM funding_reconciliation WHERE {where} AND status = 'mismatch' "
            "GROUP BY explanation ORDER BY 2 DESC",
            params,
        ).fetchall()
    if not total:
        return no_data("no settlement to reconcile", window, settlements=0)
    return AssetCheckResult(
        passed=bad == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "settlements": int(total),
            "mismatches": int(bad),
            "largest_difference_usd": float(worst),
            "explanations": ", ".join(f"{w} x{n}" for w, n in why) or "none",
        },
    )


CHECKS = [*UNIQUE_KEY_CHECKS, fills_are_priced, funding_reconciliation_matches_the_venue]
