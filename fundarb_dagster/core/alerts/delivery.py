"""Alert delivery: channels (log, JSONL file, webhook), retries with back-off, and the `alerts` and
`alert_deliveries` tables.

`raise_alerts` dedups against the `alerts` table (rules.dedupe), stores the new alerts, then delivers them to
every channel; each channel retries with back-off, and every outcome (success or the final error) is a row of
`alert_deliveries`. A failing channel never raises out of `raise_alerts`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ..sql import create_table, load_sql, registered
from ..warehouse import is_lake
from .rules import Alert, alerts_frame, dedupe

DELIVERY_COLUMNS = ["alert_id", "channel", "ts", "ok", "attempts", "error"]


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


@dataclass(frozen=True)
class RaiseResult:
    raised: list[Alert]
    suppressed: int
    deliveries: list[Delivery]

    @property
    def failed_deliveries(self) -> int:
        return sum(not d.ok for d in self.deliveries)


def ensure_tables(conn: Any) -> None:
    """Create `alerts` and `alert_deliveries` when missing (sql/alerts/*.sql). In a DuckDB file a unique index
    keeps alert_id unique; a DuckLake has no indexes, so there the insert's own filter (`raise_alerts`) does,
    and the check `alerts_has_unique_ids` looks."""
    create_table(conn, load_sql("alerts", "alerts"))
    if not is_lake(conn):
        conn.execute(load_sql("alerts", "alerts_key"))
    create_table(conn, load_sql("alerts", "alert_deliveries"))


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
        with registered(conn, "_new_alerts", frame):
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
        with registered(conn, "_new_deliveries", frame):
            conn.execute("INSERT INTO alert_deliveries SELECT * FROM _new_deliveries")
    return RaiseResult(raised, suppressed, deliveries)
