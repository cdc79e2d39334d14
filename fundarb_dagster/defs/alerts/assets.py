"""Alerts: rules over the funding tables, the capture's own events and the latest asset checks, raised once
per condition (cooldown) and delivered to the log, a JSONL file and a webhook (`core.alerts.raise_alerts`)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ...core import alerts as core_alerts
from ...core.schema import EventKind, StreamCode
from ...core.sql import execute, load_sql
from ...core.tables import table
from ..common.landing import ensure_raw_tables
from ..common.metadata import column_schema, metadata_table
from ..common.tables import ensure_tables
from ..resources import POOL, AlertChannelsResource, DataDirResource, SourceConfigResource, warehouse_connection

OWNERS = ["team:carry"]
DOMAIN = "alerts"


class AlertsConfig(Config):
    funding_spread_apr: float = Field(default=0.5, description="|funding spread| APR that raises (0.5 = 50%)")
    carry_apr: float = Field(default=0.2, description="net carry APR of an opportunity that raises")
    basis_bps: float = Field(default=50.0, description="|basis| in bps that is a dislocation")
    basis_timeframe: str = Field(default="1m", description="which basis rows the rule reads: 1m or 1h")
    gap_limit_s: float = Field(default=300.0, description="capture gaps/stalls longer than this raise")
    stale_limit_s: dict[str, float] = Field(
        default_factory=dict, description="per stream; empty: the source config's capture.stale_timeout_s"
    )
    lookback_h: float = Field(default=24.0, description="capture events ending this far back are considered")
    cooldown_h: float = Field(default=6.0, description="one alert per rule and subject per cooldown")
    check_failures: bool = Field(default=True, description="raise on failed asset checks (latest evaluations)")
    stale_clock: str = Field(
        default="data",
        description=(
            "'data': a stream is stale when it lags the newest row of any stream (replays of old data stay "
            "quiet); 'wall': when it lags the current time (a live capture that stopped entirely)"
        ),
    )


def check_keys(context: AssetExecutionContext, recent_events: int = 2000) -> list[Any]:
    """Asset check keys to read: those of the code location (or of the run's job when launched in process,
    which may be a subset) plus every check evaluated recently in this instance (the event log)."""
    from dagster import EventRecordsFilter
    from dagster._core.events import DagsterEventType

    keys: set[Any] = set()
    for get_graph in (lambda: context.repository_def.asset_graph, lambda: context.job_def.asset_layer.asset_graph):
        try:
            keys |= set(get_graph().asset_check_keys)
        except Exception:  # noqa: BLE001 - in-process `materialize` sets no repository
            continue
    records = context.instance.event_log_storage.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION), limit=recent_events, ascending=False
    )
    for record in records:
        evaluation = record.event_log_entry.asset_check_evaluation
        if evaluation is not None:
            keys.add(evaluation.asset_check_key)
    return sorted(keys, key=lambda k: (k.asset_key.to_user_string(), k.name))


def latest_check_outcomes(context: AssetExecutionContext) -> list[core_alerts.CheckOutcome]:
    """The latest evaluation of every asset check of the code location, from the Dagster instance."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    keys = check_keys(context)
    context.log.info(f"alerts: reading the latest evaluation of {len(keys)} asset checks")
    if not keys:
        return []
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    out = []
    for key, record in records.items():
        if record.status != AssetCheckExecutionRecordStatus.FAILED or record.event is None:
            continue
        evaluation = record.event.asset_check_evaluation
        if evaluation is None:
            continue
        out.append(
            core_alerts.CheckOutcome(
                asset=key.asset_key.to_user_string(),
                check=key.name,
                passed=bool(evaluation.passed),
                blocking=bool(evaluation.blocking),
                ts=datetime.fromtimestamp(record.event.timestamp, tz=UTC).replace(tzinfo=None),
                description=evaluation.description or "",
                severity=evaluation.severity.value,
                rows_checked=_rows_checked(evaluation.metadata),
            )
        )
    return out


def _rows_checked(metadata: Any) -> int | None:
    value = (metadata or {}).get("rows_checked")
    value = getattr(value, "value", value)  # a MetadataValue, or a raw number
    return int(value) if isinstance(value, int | float) else None


def _names(events: pd.DataFrame) -> pd.DataFrame:
    if events.empty:
        return events
    events = events.copy()
    events["kind"] = [
        EventKind(int(k)).name if int(k) in EventKind._value2member_map_ else str(k) for k in events["kind"]
    ]
    events["stream"] = [
        StreamCode(int(s)).name.lower() if int(s) in StreamCode._value2member_map_ else str(s) for s in events["stream"]
    ]
    return events


@asset(
    group_name="alerts",
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["funding_spreads", "opportunities", "basis", "capture_events", "raw_trades", "raw_tickers", "raw_funding"],
    description=(
        "Alerts raised by rules (funding spread or net carry above a threshold, basis dislocation, a stream gapped "
        "or stale beyond its limit, a failed asset check), one per condition per cooldown, delivered to the log, "
        "a JSONL file and a webhook with retries; every delivery outcome lands in `alert_deliveries`."
    ),
    metadata={"dagster/column_schema": column_schema("alerts"), "natural_key": table("alerts").natural_key},
)
def alerts(
    context: AssetExecutionContext,
    config: AlertsConfig,
    duckdb: DuckDBResource,
    data_dir: DataDirResource,
    source: SourceConfigResource,
    alert_channels: AlertChannelsResource,
) -> MaterializeResult:
    stale_limits = dict(config.stale_limit_s)
    if not stale_limits:
        try:
            stale_limits = dict(source.load().capture.stale_timeout_s)
        except Exception as exc:  # noqa: BLE001 - fall back to no staleness rule, say so
            context.log.warning(f"alerts: no stale limits ({exc}); staleness not checked")
    raised: list[core_alerts.Alert] = []
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), "capture_events", "raw_trades", "raw_tickers", "raw_funding")
        ensure_tables(conn, "funding_spreads", "opportunities", "basis")
        raised += core_alerts.funding_spread_rule(_query(conn, "latest_spreads"), config.funding_spread_apr)
        raised += core_alerts.carry_rule(conn.execute("SELECT * FROM opportunities").df(), config.carry_apr)
        latest_basis = _query(conn, "latest_basis")
        latest_basis = latest_basis[latest_basis["timeframe"] == config.basis_timeframe]
        raised += core_alerts.basis_rule(latest_basis, config.basis_bps)
        last_seen = _query(conn, "last_seen")
        # By default the data clock: replays of old data must not read as stale. `stale_clock: wall` also
        # catches a live capture that stopped entirely (it shows in the freshness checks either way).
        if config.stale_clock not in ("data", "wall"):
            raise ValueError(f"stale_clock: {config.stale_clock!r}; expected 'data' or 'wall'")
        now = last_seen["last_ts"].max() if len(last_seen) else None
        if config.stale_clock == "wall" and now is not None:
            now = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
        if now is not None and not pd.isna(now):
            end = pd.Timestamp(now) + pd.Timedelta(hours=1)
            start = end - pd.Timedelta(hours=config.lookback_h)
            params = {"start_ms": start.value // 1_000_000, "end_ms": end.value // 1_000_000}
            events = _names(_query(conn, "recent_capture_events", params))
            raised += core_alerts.stream_gap_rule(events, config.gap_limit_s)
            raised += core_alerts.staleness_rule(last_seen, pd.Timestamp(now).to_pydatetime(), stale_limits)
        if config.check_failures:
            raised += core_alerts.failed_check_rule(latest_check_outcomes(context))
        result = core_alerts.raise_alerts(
            conn,
            raised,
            alert_channels.channels(context.log, data_dir.path()),
            cooldown=timedelta(hours=config.cooldown_h),
            retries=alert_channels.retries,
            backoff_s=alert_channels.backoff_s,
        )
        total = conn.execute("SELECT count(*) FROM alerts").fetchall()[0][0]
        recent = _query(conn, "recent_alerts", {"limit": RECENT_ALERTS})
    for delivery in result.deliveries:
        if not delivery.ok:
            context.log.warning(
                f"alerts: delivery of {delivery.alert_id} to {delivery.channel} failed after "
                f"{delivery.attempts} attempts: {delivery.error}"
            )
    frame = core_alerts.alerts_frame(result.raised)
    return MaterializeResult(
        metadata={
            "evaluated": len(raised),
            "raised": len(result.raised),
            "suppressed_by_cooldown": result.suppressed,
            "failed_deliveries": result.failed_deliveries,
            "alerts_total": int(total),
            "channels": MetadataValue.text(", ".join(c.name for c in alert_channels.channels(None, data_dir.path()))),
            "raised_alerts": metadata_table(frame.drop(columns=["alert_id"]), descriptions=ALERT_ABOUT),
            "recent_alerts": metadata_table(recent, descriptions=ALERT_ABOUT, max_rows=RECENT_ALERTS),
            "critical_raised": int((frame["severity"] == "critical").sum()) if len(frame) else 0,
        }
    )


RECENT_ALERTS = 20
ALERT_ABOUT = {
    **{c.name: c.description for c in table("alerts").columns},
    "value": "the observed value, in the rule's unit (APR as a fraction, bps, seconds: see the message)",
    "threshold": "the limit it crossed, in the same unit",
}


def _query(conn: Any, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    return execute(conn, load_sql(DOMAIN, name), params or {}).df()
