"""The check builders every warehouse table uses.

Checks are partitioned like their asset: in a run they look at the run's window only (one hour or the
whole ranged run), so their cost does not grow with history. Severity says what happens next: ERROR and
`blocking=True` where bad rows must not flow downstream (duplicate keys, impossible prices).

A check that found no rows to look at does not pass: it warns "no data" (`no_data`), so a green check
always means rows were checked (a WARN does not block downstream, an empty window is not an error).
"""

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetRecordsFilter,
    MetadataValue,
    Output,
    asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not exported (1.13)
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster_duckdb import DuckDBResource

from ...core.landing import newest_landed_hour_ms
from ...core.sql import check_identifier, table_exists
from ...core.units import HOUR_MS, MINUTE_MS
from ...core.window import Window
from ..partitions import key_ms, partition_window
from ..resources import POOL, DataDirResource, SourceConfigResource, warehouse_connection


def window_check(**kwargs: Any) -> Callable[[Callable[..., AssetCheckResult]], AssetChecksDefinition]:
    """`@asset_check` for a check partitioned like its asset, whose one result covers the run's window.

    Dagster (1.13) plans a ranged run's check once per partition but records an `AssetCheckResult` for
    no partition, so every partition of the range stays "planned" and the UI's Checks tab lists it as
    Skipped while the detail pane shows the result. Here the window's result is recorded for each partition
    it covered (`evaluations_per_partition`); a one-partition run records it as Dagster does. Its metadata names
    the event-time window it looked at (`event_window`: on imported history's months, clamped to landed data)."""

    def decorate(fn: Callable[..., AssetCheckResult]) -> AssetChecksDefinition:
        @functools.wraps(fn)  # Dagster reads the parameters (context, resources) through __wrapped__
        def each_partition(context: AssetCheckExecutionContext, *args: Any, **resources: Any) -> Iterator[Any]:
            result = fn(context, *args, **resources)
            window = check_window(context)
            if window is not None:
                result = result._replace(metadata={**result.metadata, "event_window": MetadataValue.text(str(window))})
            yield from evaluations_per_partition(context, result)

        return asset_check(**kwargs)(each_partition)

    return decorate


def evaluations_per_partition(context: AssetCheckExecutionContext, result: AssetCheckResult) -> Iterator[Any]:
    """The check's result for each partition of a ranged run (then the step's output); else the result (a check
    without partitions of its own in a ranged run: once, naming the run's window, as imported history's)."""
    if context.has_partition_key or not context.has_partition_key_range:
        yield result
        return
    check_key = context.check_specs[0].key
    keys = list(context.partition_keys)
    if context.check_specs[0].partitions_def is None:
        window = MetadataValue.text(f"{keys[0]} .. {keys[-1]} ({len(keys)} partitions)")
        yield result._replace(metadata={**result.metadata, "window": window})
        return
    latest = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=check_key.asset_key, asset_partitions=keys), limit=len(keys)
    ).records  # newest first: the first record of a partition is its latest materialization
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in latest:
        targets.setdefault(
            record.partition_key,
            AssetCheckEvaluationTargetMaterializationData(
                run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
            ),
        )
    window = MetadataValue.text(f"{keys[0]} .. {keys[-1]} ({len(keys)} partitions)")
    for key in keys:
        yield AssetCheckEvaluation(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=result.passed,
            metadata={**result.metadata, "window": window},
            target_materialization_data=targets.get(key),
            severity=result.severity,
            description=result.description,
            blocking=context.check_specs[0].blocking,
            partition=key,
        )
    yield Output(None)


def check_window(context: AssetCheckExecutionContext) -> Window | None:
    """The run's event-time window, or None (whole table) for an unpartitioned check run. A check of a history
    copy is given the `data_dir` resource: its window is clamped to the data landed there (`partition_window`)."""
    if context.has_partition_key or context.has_partition_key_range:
        return partition_window(context)
    return None


def window_clause(window: Window | None, column: str = "ts") -> tuple[str, dict[str, Any]]:
    """A WHERE clause restricting a check to its window (bound parameters, the column name checked)."""
    if window is None:
        return "TRUE", {}
    column = check_identifier(column)
    return f"{column} >= $start AND {column} < $end", {"start": window.start, "end": window.end}


def no_data(what: str, window: Window | None = None, **metadata: Any) -> AssetCheckResult:
    """The result of a check with nothing to check: not passed, WARN, saying so (never a green pass on 0 rows)."""
    where = f" in {window}" if window is not None else ""
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.WARN,
        description=f"no data: {what}{where}; nothing was checked",
        metadata={"rows_checked": 0, **metadata},
    )


def build_unique_key_check(
    asset: Any, table: str, key: Sequence[str], partitions_def: Any, blocking: bool = True
) -> AssetChecksDefinition:
    """`<table>_has_unique_keys`: no two rows share the natural key (ERROR, blocking)."""
    columns = ", ".join(check_identifier(c) for c in key)

    @window_check(
        asset=asset,
        name=f"{table}_has_unique_keys",
        description=f"No two rows of {table} share ({columns}) in the run's window.",
        blocking=blocking,
        pool=POOL,
        partitions_def=partitions_def,
    )
    def _check(
        context: AssetCheckExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
    ) -> AssetCheckResult:
        window = check_window(context)
        where, params = window_clause(window)
        with warehouse_connection(duckdb) as conn:
            if not table_exists(conn, table):
                return no_data(f"table {table} does not exist", window)
            duplicates, rows = conn.execute(
                f"SELECT count(*) - count(DISTINCT ({columns})), count(*) FROM {table} WHERE {where}", params
            ).fetchone()
        if not rows:
            return no_data(f"0 rows of {table}", window)
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

    @window_check(
        asset=asset,
        name=name,
        description=description,
        blocking=blocking,
        pool=POOL,
        partitions_def=partitions_def,
    )
    def _check(
        context: AssetCheckExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
    ) -> AssetCheckResult:
        window = check_window(context)
        where, params = window_clause(window)
        with warehouse_connection(duckdb) as conn:
            if not table_exists(conn, table):
                return no_data(f"table {table} does not exist", window)
            bad, rows = conn.execute(
                f"SELECT count(*) FILTER (WHERE {bad_rows_sql}), count(*) FROM {check_identifier(table)} WHERE {where}",
                params,
            ).fetchone()
            sample = conn.execute(f"SELECT * FROM {table} WHERE {where} AND ({bad_rows_sql}) LIMIT 5", params).df()
        if not rows:
            return no_data(f"0 rows of {table}", window)
        metadata: dict[str, Any] = {"bad_rows": int(bad), "rows_checked": int(rows), "rule": f"not ({bad_rows_sql})"}
        if bad:
            metadata["sample"] = sample.to_markdown(index=False)
        return AssetCheckResult(passed=bad == 0, severity=severity, metadata=metadata)

    return _check


def build_freshness_check(asset: Any, deadline_minutes: int) -> AssetChecksDefinition:
    """`<asset>_is_fresh`: every hour that has closed has a materialized partition (WARN, not blocking).

    The clock depends on the source: for a live capture, an hour has closed `deadline_minutes` after it
    ends on the wall clock; for simulated or replayed data, once a later hour has landed (the data's own
    clock), so a replay of last month is as fresh as it is caught up, not a month late."""
    name = f"{asset.key.to_user_string()}_is_fresh"

    @asset_check(
        asset=asset,
        name=name,
        description=(
            f"Every closed hour of {asset.key.to_user_string()} is loaded: hours before the newest landed hour "
            f"(simulated or replayed data: the data's clock), or hours that ended {deadline_minutes} minutes ago "
            "(live capture: the wall clock)."
        ),
        blocking=False,
    )
    def _check(
        context: AssetCheckExecutionContext, data_dir: DataDirResource, source: SourceConfigResource
    ) -> AssetCheckResult:
        live = source.load().source == "live"
        if live:
            due = (time.time_ns() // 1_000_000 - deadline_minutes * MINUTE_MS) // HOUR_MS * HOUR_MS
        else:
            due = newest_landed_hour_ms(data_dir.path())
        loaded = context.instance.get_materialized_partitions(asset.key)
        newest = max((key_ms(k) for k in loaded), default=None)
        metadata: dict[str, Any] = {"clock": "wall" if live else "data", "deadline_minutes": deadline_minutes}
        if due is None:
            return AssetCheckResult(
                passed=False, severity=AssetCheckSeverity.WARN, description="no data landed", metadata=metadata
            )
        metadata["closed_hours_end"] = _iso(due)
        metadata["newest_loaded_hour"] = _iso(newest) if newest is not None else "none"
        lag_h = (due - (newest + HOUR_MS)) / HOUR_MS if newest is not None else None
        metadata["hours_behind"] = max(0.0, lag_h) if lag_h is not None else "all"
        passed = lag_h is not None and lag_h <= 0
        clock = "wall clock" if live else "data's clock (newest landed hour)"
        newest_loaded = metadata["newest_loaded_hour"]
        return AssetCheckResult(
            passed=passed,
            severity=AssetCheckSeverity.WARN,
            description=f"{clock}: hours before {_iso(due)} must be loaded; newest loaded {newest_loaded}",
            metadata=metadata,
        )

    return _check


def _iso(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"
