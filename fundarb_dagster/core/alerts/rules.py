"""Alert rules: conditions in tables -> `Alert` records, and the cooldown that keeps one alert per condition.

Pure functions, frames in and records out (no I/O): each `*_rule` reads the table it is named for and returns
the alerts its threshold raises; `dedupe` drops an alert whose (rule, subject) was already raised less than
`cooldown` before it, so a condition that persists across runs raises once (and again as a reminder once the
cooldown has passed). Storing and sending them is `delivery.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

SEVERITIES = ("info", "warning", "critical")
ALERT_COLUMNS = ["alert_id", "ts", "severity", "rule", "subject", "value", "threshold", "message"]


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


def alerts_frame(alerts: Sequence[Alert]) -> pd.DataFrame:
    rows = [{"alert_id": a.alert_id, **asdict(a)} for a in alerts]
    frame = pd.DataFrame(rows, columns=ALERT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    return frame


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
    severity: str = "ERROR"  # the evaluation's: ERROR or WARN
    rows_checked: int | None = None  # 0: the window held no data (the check says "no data", it found nothing bad)


def failed_check_rule(outcomes: Iterable[CheckOutcome]) -> list[Alert]:
    """A failed asset check (latest evaluation) raises: critical when the check was blocking and failed with
    ERROR, else a warning. A check that had no data to check raises nothing: it found nothing wrong, and data
    that should be there and is not is the stale-stream rule's alert."""
    out = []
    for outcome in outcomes:
        if outcome.passed or outcome.rows_checked == 0:
            continue
        out.append(
            Alert(
                rule="asset_check_failed",
                subject=f"{outcome.asset}.{outcome.check}",
                severity="critical" if outcome.blocking and outcome.severity == "ERROR" else "warning",
                value=1.0,
                threshold=0.0,
                ts=outcome.ts,
                message=outcome.description or f"check {outcome.check} on {outcome.asset} failed",
            )
        )
    return out
