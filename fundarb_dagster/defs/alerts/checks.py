"""Asset checks of the alerts domain."""

from dagster import AssetCheckResult, asset_check
from dagster_duckdb import DuckDBResource

from ...core.alerts import SEVERITIES
from ...core.sql import table_exists
from ..common.checks import no_data
from ..resources import warehouse_connection
from .assets import alerts


@asset_check(asset=alerts, description="alert_id is unique and every severity is one of info/warning/critical.")
def alerts_has_unique_ids(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "alerts"):
            return no_data("table alerts does not exist")
        dupes, bad, rows = conn.execute(
            "SELECT count(*) - count(DISTINCT alert_id), count(*) FILTER (WHERE severity NOT IN $severities), count(*) "
            "FROM alerts",
            {"severities": list(SEVERITIES)},
        ).fetchall()[0]
    if not rows:
        return no_data("no alert raised yet")
    return AssetCheckResult(
        passed=dupes == 0 and bad == 0,
        metadata={"rows": int(rows), "duplicate_ids": int(dupes), "bad_severity": int(bad)},
    )


@asset_check(asset=alerts, description="Share of alert deliveries that failed after retries (warns above 0).")
def alerts_are_delivered(duckdb: DuckDBResource) -> AssetCheckResult:
    from dagster import AssetCheckSeverity

    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "alert_deliveries"):
            return no_data("table alert_deliveries does not exist")
        failed, total = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT ok), count(*) FROM alert_deliveries"
        ).fetchall()[0]
    if not total:
        return no_data("no alert delivered yet")
    return AssetCheckResult(
        passed=failed == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"deliveries": int(total), "failed": int(failed)},
    )


ALERT_CHECKS = [alerts_has_unique_ids, alerts_are_delivered]
