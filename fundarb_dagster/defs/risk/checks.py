"""Asset checks of the risk domain, next to their assets."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check
from dagster_duckdb import DuckDBResource

from ...core.sql import table_exists
from ..common.checks import no_data
from ..resources import warehouse_connection


@asset_check(asset="risk_report", description="the latest report has no critical limit breach")
def risk_report_has_no_critical_breach(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "risk_report"):
            return no_data("table risk_report does not exist")
        if not conn.execute("SELECT count(*) FROM risk_report").fetchone()[0]:
            return no_data("no risk report yet")
        rows = conn.execute(
            "SELECT name, subject, value, threshold FROM risk_report WHERE section = 'breach' AND severity = 'critical'"
            " AND report_id = (SELECT report_id FROM risk_report ORDER BY created_at DESC LIMIT 1)"
        ).fetchall()
    return AssetCheckResult(
        passed=not rows,
        severity=AssetCheckSeverity.WARN,
        metadata={"critical": len(rows), "first": str(rows[0]) if rows else ""},
    )
