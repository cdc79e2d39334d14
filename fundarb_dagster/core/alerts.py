"""Alerts: rules that turn tables into alerts, dedup with a cooldown, delivery with retries.

The plain API other domains call (risk breaches, backtests):

    from fundarb_dagster.core.alerts import Alert, JsonlChannel, WebhookChannel, raise_alerts
    result = raise_alerts(conn, [Alert(rule="risk_drawdown", subject="run 42", severity="critical",
                                       value=0.31, threshold=0.2, ts=now, message="drawdown 31% > 20%")],
                          channels=[JsonlChannel("data/alerts.jsonl")], cooldown=timedelta(hours=1))

`raise_alerts` keeps one alert per condition: an alert whose (rule, subject) was already raised less than
`cooldown` before it is suppressed, so a condition that persists across runs raises once (and again as a
reminder once the cooldown has passed). New alerts are written to the `alerts` table, then delivered to
every channel; each channel retries with back-off, and every outcome (success or the final error) is a row
of `alert_deliveries`. A failing channel never raises out of `raise_alerts`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from .sql import load_sql

SEVERITIES = ("info", "warning", "critical")
ALERT_COLUMNS = ["alert_id", "ts", "severity", "rule", "subject", "value", "threshold", "message"]
DELIVERY_COLUMNS = ["alert_id", "channel", "ts", "ok", "attempts", "error"]


def _naive_utc(ts: Any) -> datetime:
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


@dataclass(frozen=True)
class Alert:
    """One raised condition. `ts` is when the condition was observed (data time, UTC)."""

    rule: str
    subject: str
    severity: str
    value: float
    threshold: float
    ts: datetime
    message: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: {self.severity!r} for rule {self.rule!r}; expected one of {SEVERITIES}")
        object.__setattr__(self, "ts", _naive_utc(self.ts))

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject)

    @property
    def alert_id(self) -> str:
        raw = f"{self.rule}|{self.subject}|{self.ts.isoformat()}"
        return hashlib.sha1(raw.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ts"] = self.ts.isoformat() + "Z"
        return {"alert_id": self.alert_id, **out}


@dataclass(frozen=True)
class Delivery:
    alert_id: str
    channel: str
    ts: datetime
    ok: bool
    attempts: int
    error: str | None


class AlertChannel(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver one alert or raise; `deliver` does the retrying."""


class DeliveryError(Exception):
    """A delivery failed in a way that retrying will not fix (an HTTP 4xx other than 429)."""


# -- channels -----------------------------------------------------------------------------------------
@dataclass
class LogChannel:
    """Alerts as log lines (a Dagster context's log, or any logging.Logger)."""

    logger: Any = field(default_factory=lambda: logging.getLogger("fundarb.alerts"))
    name: str = "log"

    def send(self, alert: Alert) -> None:
        level = {"info": "info", "warning": "warning", "critical": "error"}[alert.severity]
        getattr(self.logger, level)(
            f"ALERT [{alert.severity}] {alert.rule} {alert.subject}: value {alert.value:.6g} "
            f"vs threshold {alert.threshold:.6g} at {alert.ts:%Y-%m-%d %H:%M} UTC. {alert.message}"
        )


@dataclass
class JsonlChannel:
    """One JSON object per alert appended to a file (flushed and fsynced: a crash never tears a line)."""

    path: str | Path
    name: str = "jsonl"

    def send(self, alert: Alert) -> None:
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(alert.to_dict(), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class WebhookChannel:
    """HTTP POST of the alert as a JSON body. The URL may hold a token: it is never logged or stored."""

    url: str
    timeout_s: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)
    name: str = "webhook"

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.to_dict(), sort_keys=True).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "fundarb-alerts", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code != 429:
                raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
            raise RuntimeError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            # str(exc) would include nothing of the URL, but keep only the reason to be sure.
            raise RuntimeError(f"connection failed: {exc.reason}") from None


# -- delivery -----------------------------------------------------------------------------------------
def deliver(
    alerts: Sequence[Alert],
    channels: Sequence[AlertChannel],
    retries: int = 3,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
) -> list[Delivery]:
    """Send every alert to every channel, `retries` attempts each with doubling back-off; never raises."""
    if retries < 1:
        raise ValueError(f"retries: {retries!r} must be >= 1")
    out = []
    for alert in alerts:
        for channel in channels:
            error: str | None = None
            attempts = 0
            for attempt in range(1, retries + 1):
                attempts = attempt
                try:
                    channel.send(alert)
                    error = None
                    break
                except DeliveryError as exc:
                    error = str(exc)
                    break
                except Exception as exc:  # noqa: BLE001 - a channel must never crash the run
                    error = f"{type(exc).__name__}: {exc}"
                    if attempt < retries:
                        sleep(backoff_s * 2 ** (attempt - 1))
            out.append(Delivery(alert.alert_id, channel.name, clock(), error is None, attempts, error))
    return out


# -- dedup --------------------------------------------------------------------------------------------
def dedupe(
    alerts: Iterable[Alert], last_raised: Mapping[tuple[str, str], datetime], cooldown: timedelta
) -> tuple[list[Alert], int]:
    """Alerts to raise, and how many were suppressed: one per (rule, subject) per cooldown window.

    `last_raised`: when each (rule, subject) was last raised (from the `alerts` table). Alerts are taken in
    time order, so within one batch the first of a burst raises and the rest fall in its cooldown.
    """
    last = dict(last_raised)
    raised: list[Alert] = []
    suppressed = 0
    for alert in sorted(alerts, key=lambda a: (a.ts, a.rule, a.subject)):
        previous = last.get(alert.key)
        if previous is not None and alert.ts - previous < cooldown:
            suppressed += 1
            continue
        raised.append(alert)
        last[alert.key] = alert.ts
    return raised, suppressed


@dataclass(frozen=True)
class RaiseResult:
    raised: list[Alert]
    suppressed: int
    deliveries: list[Delivery]

    @property
    def failed_deliveries(self) -> int:
        return sum(not d.ok for d in self.deliveries)


def ensure_tables(conn: Any) -> None:
    """Create `alerts` and `alert_deliveries` when missing (sql/alerts/*.sql)."""
    conn.execute(load_sql("alerts", "alerts"))
    conn.execute(load_sql("alerts", "alert_deliveries"))


def last_raised(conn: Any) -> dict[tuple[str, str], datetime]:
    rows = conn.execute("SELECT rule, subject, max(ts) FROM alerts GROUP BY rule, subject").fetchall()
    return {(rule, subject): ts for rule, subject, ts in rows}


def raise_alerts(
    conn: Any,
    alerts: Iterable[Alert],
    channels: Sequence[AlertChannel],
    cooldown: timedelta = timedelta(hours=1),
    retries: int = 3,
    backoff_s: float = 0.5,
) -> RaiseResult:
    """Dedup against the `alerts` table, store the new alerts, deliver them, record every delivery.

    `conn` is an open DuckDB connection (read-write). The tables are created when missing.
    """
    ensure_tables(conn)
    raised, suppressed = dedupe(alerts, last_raised(conn), cooldown)
    if raised:
        frame = alerts_frame(raised)
        with _registered(conn, "_new_alerts", frame):
            # An identical alert (same id) stored by an earlier run is not stored or sent twice.
            new_ids = conn.execute(
                "SELECT alert_id FROM _new_alerts WHERE alert_id NOT IN (SELECT alert_id FROM alerts)"
            ).fetchall()
            conn.execute(
                "INSERT INTO alerts SELECT * FROM _new_alerts WHERE alert_id NOT IN (SELECT alert_id FROM alerts)"
            )
        keep = {row[0] for row in new_ids}
        suppressed += len(raised) - len(keep)
        raised = [a for a in raised if a.alert_id in keep]
    deliveries = deliver(raised, channels, retries=retries, backoff_s=backoff_s)
    if deliveries:
        frame = pd.DataFrame([asdict(d) for d in deliveries], columns=DELIVERY_COLUMNS)
        with _registered(conn, "_new_deliveries", frame):
            conn.execute("INSERT INTO alert_deliveries SELECT * FROM _new_deliveries")
    return RaiseResult(raised, suppressed, deliveries)


@contextmanager
def _registered(conn: Any, name: str, frame: pd.DataFrame) -> Iterator[None]:
    # DuckDB 2 refuses (un)register while a result is half-fetched (a fetchone): finish it first.
    conn.execute("SELECT 1").fetchall()
    conn.register(name, frame)
    try:
        yield
    finally:
        conn.execute("SELECT 1").fetchall()
        conn.unregister(name)


def alerts_frame(alerts: Sequence[Alert]) -> pd.DataFrame:
    rows = [{"alert_id": a.alert_id, **asdict(a)} for a in alerts]
    frame = pd.DataFrame(rows, columns=ALERT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    return frame


# -- rules --------------------------------------------------------------------------------------------
def _severity(value: float, threshold: float, critical_factor: float) -> str:
    return "critical" if abs(value) >= critical_factor * abs(threshold) else "warning"


def funding_spread_rule(spreads: pd.DataFrame, threshold_apr: float, critical_factor: float = 2.0) -> list[Alert]:
    """The latest hour of each venue pair whose |funding_spread_apr| exceeds the threshold."""
    if spreads.empty:
        return []
    keys = ["underlying", "exchange_a", "symbol_a", "exchange_b", "symbol_b"]
    latest = spreads.sort_values("ts", kind="stable").groupby(keys, sort=True).tail(1)
    out = []
    for row in latest[latest["funding_spread_apr"].abs() > threshold_apr].itertuples(index=False):
        value = float(row.funding_spread_apr)
        out.append(
            Alert(
                rule="funding_spread",
                subject=f"{row.underlying} {row.exchange_a}:{row.symbol_a} vs {row.exchange_b}:{row.symbol_b}",
                severity=_severity(value, threshold_apr, critical_factor),
                value=value,
                threshold=threshold_apr,
                ts=row.ts,
                message=f"funding spread {value:.2%} APR exceeds {threshold_apr:.2%}",
            )
        )
    return out


def carry_rule(opportunities: pd.DataFrame, threshold_apr: float, critical_factor: float = 2.0) -> list[Alert]:
    """Opportunities whose net carry APR (after costs) exceeds the threshold."""
    if opportunities.empty:
        return []
    out = []
    for row in opportunities[opportunities["net_carry_apr"] > threshold_apr].itertuples(index=False):
        value = float(row.net_carry_apr)
        out.append(
            Alert(
                rule="carry",
                subject=(
                    f"{row.strategy} {row.underlying} long {row.long_exchange}:{row.long_symbol} "
                    f"short {row.short_exchange}:{row.short_symbol}"
                ),
                severity=_severity(value, threshold_apr, critical_factor),
                value=value,
                threshold=threshold_apr,
                ts=row.as_of,
                message=(
                    f"net carry {value:.2%} APR over {int(row.horizon_h)}h, break-even {row.break_even_h:.1f}h, "
                    f"half-life {row.half_life_h:.1f}h"
                ),
            )
        )
    return out


def basis_rule(basis: pd.DataFrame, threshold_bps: float, critical_factor: float = 2.0) -> list[Alert]:
    """The latest bucket of each perp whose |basis_bps| (perp vs spot) is dislocated beyond the threshold."""
    if basis.empty:
        return []
    latest = basis.sort_values("ts", kind="stable").groupby(["exchange", "symbol", "timeframe"]).tail(1)
    out = []
    for row in latest[latest["basis_bps"].abs() > threshold_bps].itertuples(index=False):
        value = float(row.basis_bps)
        out.append(
            Alert(
                rule="basis_dislocation",
                subject=f"{row.exchange}:{row.symbol} {row.timeframe}",
                severity=_severity(value, threshold_bps, critical_factor),
                value=value,
                threshold=threshold_bps,
                ts=row.ts,
                message=f"basis {value:.1f} bps vs spot {row.spot_symbol} beyond {threshold_bps:.1f} bps",
            )
        )
    return out


def stream_gap_rule(events: pd.DataFrame, gap_limit_s: float) -> list[Alert]:
    """capture_events GAP / STALE rows longer than the limit (`stream`, `kind` names, start_ms, end_ms)."""
    if events.empty:
        return []
    frame = events[events["kind"].isin(["GAP", "STALE"])].copy()
    frame["duration_s"] = (frame["end_ms"] - frame["start_ms"]) / 1000.0
    out = []
    for row in frame[frame["duration_s"] > gap_limit_s].itertuples(index=False):
        who = f"{row.exchange}:{row.symbol}" if isinstance(row.exchange, str) and row.exchange else "capture"
        out.append(
            Alert(
                rule="stream_gap" if row.kind == "GAP" else "stream_stale",
                subject=f"{who} {row.stream}",
                severity=_severity(row.duration_s, gap_limit_s, 10.0),
                value=float(row.duration_s),
                threshold=gap_limit_s,
                ts=pd.to_datetime(row.end_ms, unit="ms"),
                message=f"{row.kind.lower()} of {row.duration_s:.0f}s ({row.reason})",
            )
        )
    return out


def staleness_rule(last_seen: pd.DataFrame, now: datetime, stale_limit_s: Mapping[str, float]) -> list[Alert]:
    """Streams whose latest row is older than their limit: last_seen has exchange, symbol, stream, last_ts."""
    out = []
    now = _naive_utc(now)
    for row in last_seen.itertuples(index=False):
        limit = stale_limit_s.get(row.stream)
        if limit is None or pd.isna(row.last_ts):
            continue
        age_s = (now - _naive_utc(row.last_ts)).total_seconds()
        if age_s > limit:
            out.append(
                Alert(
                    rule="stream_stale",
                    subject=f"{row.exchange}:{row.symbol} {row.stream}",
                    severity=_severity(age_s, limit, 10.0),
                    value=age_s,
                    threshold=float(limit),
                    ts=now,
                    message=f"no {row.stream} for {age_s:.0f}s (limit {limit:.0f}s)",
                )
            )
    return out


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    blocking: bool
    ts: datetime
    description: str = ""


def failed_check_rule(outcomes: Iterable[CheckOutcome]) -> list[Alert]:
    """A failed asset check (latest evaluation) raises: critical when the check was blocking."""
    out = []
    for outcome in outcomes:
        if outcome.passed:
            continue
        out.append(
            Alert(
                rule="asset_check_failed",
                subject=f"{outcome.asset}.{outcome.check}",
                severity="critical" if outcome.blocking else "warning",
                value=1.0,
                threshold=0.0,
                ts=outcome.ts,
                message=outcome.description or f"check {outcome.check} on {outcome.asset} failed",
            )
        )
    return out
