"""The check builders every warehouse table uses.

Checks are partitioned like their asset: in a run they look at the run's window only (one hour or the
whole ranged run), so their cost does not grow with history. Severity says what happens next: ERROR and
`blocking=True` where bad rows must not flow downstream (duplicate keys, impossible prices).
"""

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from ...core.sql import check_identifier, table_exists
from ..partitions import Window, partition_window
from ..resources import POOL, warehouse_connection


def check_window(context: AssetCheckExecutionContext) -> Window | None:
    """The run's event-time window, or None (whole table) for an unpartitioned check run."""
    if context.has_partition_key or context.has_partition_key_range:
        return partition_window(context)
    return None


def window_clause(window: Window | None, column: str = "ts") -> tuple[str, dict[str, Any]]:
    """A WHERE clause restricting a check to its window (bound parameters, the column name checked)."""
    if window is None:
        return "TRUE", {}
    column = check_identifier(column)
    return f"{column} >= $start AND {column} < $end", {"start": window.start, "end": window.end}


def build_unique_key_check(
    asset: Any, table: str, key: Sequence[str], partitions_def: Any, blocking: bool = True
) -> AssetChecksDefinition:
    """`<table>_has_unique_keys`: no two rows share the natural key (ERROR, blocking)."""
    columns = ", ".join(check_identifier(c) for c in key)

    @asset_check(
        asset=asset,
        name=f"{table}_has_unique_keys",
        description=f"No two rows of {table} share ({columns}) in the run's window.",
        blocking=blocking,
        pool=POOL,
        partitions_def=partitions_def,
    )
    def _check(context: AssetCheckExecutionContext, duckdb: DuckDBResource) -> AssetCheckResult:
        where, params = window_clause(check_window(context))
        with warehouse_connection(duckdb) as conn:
            if not table_exists(conn, table):
                return AssetCheckResult(passed=False, metadata={"error": f"table {table} does not exist"})
            duplicates, rows = conn.execute(
                f"SELECT count(*) - count(DISTINCT ({columns})), count(*) FROM {table} WHERE {where}", params
            ).fetchone()
        return AssetCheckResult(
            passed=duplicates == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"duplicate_rows": int(duplicates), "rows_checked": int(rows), "key": columns},
        )

    return _check


def build_condition_check(
    asset: Any,
    name: str,
    table: str,
    bad_rows_sql: str,
    description: str,
    partitions_def: Any,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
    blocking: bool = True,
) -> AssetChecksDefinition:
    """A check that no row of the window matches `bad_rows_sql` (a boolean SQL expression, no parameters)."""

    @asset_check(
        asset=asset,
        name=name,
        description=description,
        blocking=blocking,
        pool=POOL,
        partitions_def=partitions_def,
    )
    def _check(context: AssetCheckExecutionContext, duckdb: DuckDBResource) -> AssetCheckResult:
        where, params = window_clause(check_window(context))
        with warehouse_connection(duckdb) as conn:
            if not table_exists(conn, table):
                return AssetCheckResult(passed=False, metadata={"error": f"table {table} does not exist"})
            bad, rows = conn.execute(
                f"SELECT count(*) FILTER (WHERE {bad_rows_sql}), count(*) FROM {check_identifier(table)} WHERE {where}",
                params,
            ).fetchone()
            sample = conn.execute(f"SELECT * FROM {table} WHERE {where} AND ({bad_rows_sql}) LIMIT 5", params).df()
        metadata: dict[str, Any] = {"bad_rows": int(bad), "rows_checked": int(rows), "rule": f"not ({bad_rows_sql})"}
        if bad:
            metadata["sample"] = sample.to_markdown(index=False)
        return AssetCheckResult(passed=bad == 0, severity=severity, metadata=metadata)

    return _check
