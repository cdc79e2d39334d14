"""Event-time partitions shared by every domain, and the helpers assets use to read their window.

Every partitioned table is keyed by event time (UTC): an hourly partition holds the rows whose `ts` falls in
that hour, whatever the time they arrived. Import `HOURLY` / `DAILY` (the same objects) so that jobs can
select assets by partitions definition and ranged runs (`BackfillPolicy.single_run()`) can span many keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AutomationCondition,
    BackfillPolicy,
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
)

from ..core.units import HOUR_MS

# Early enough for the recorded fixtures (2019) and imported history; end_offset=1 includes the hour (or
# day) in progress, so a live capture's current hour can be materialized before it closes.
PARTITIONS_START = "2019-01-01"
HOURLY = HourlyPartitionsDefinition(start_date=f"{PARTITIONS_START}-00:00", end_offset=1, timezone="UTC")
DAILY = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")

# One run per partition range: a backfill of days of hours is one SQL statement per asset, not one per hour.
SINGLE_RUN = BackfillPolicy.single_run()

# Downstream hourly tables follow their parents: whenever any parent partition is updated (new or late
# data, any hour, not only the latest) and nothing upstream is missing or running. `eager()` minus its
# latest-time-window clause, so a late file for an old hour still propagates.
FOLLOW_UPSTREAM = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("follow_upstream")


@dataclass(frozen=True)
class Window:
    """A half-open event-time window [start, end) as the SQL files bind it."""

    start: datetime  # naive UTC, what DuckDB TIMESTAMP parameters expect
    end: datetime

    @property
    def start_ms(self) -> int:
        return _epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _epoch_ms(self.end)

    @property
    def hours(self) -> int:
        return (self.end_ms - self.start_ms) // HOUR_MS

    def params(self, **extra: Any) -> dict[str, Any]:
        """The standard parameters: $start/$end (TIMESTAMP), $start_ms/$end_ms (epoch ms), plus extras."""
        return {"start": self.start, "end": self.end, "start_ms": self.start_ms, "end_ms": self.end_ms, **extra}

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M})"


def window_from_ms(start_ms: int, end_ms: int) -> Window:
    if end_ms <= start_ms:
        raise ValueError(f"window: end_ms {end_ms} must be after start_ms {start_ms}")
    return Window(_naive(start_ms), _naive(end_ms))


def partition_window(context: Any) -> Window:
    """The run's event-time window: one partition or a whole range (`partition_time_window` spans it)."""
    time_window = context.partition_time_window
    return window_from_ms(
        int(time_window.start.timestamp() * 1000),
        int(time_window.end.timestamp() * 1000),
    )


def _naive(ms: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=int(ms))


def _epoch_ms(t: datetime) -> int:
    aware = t.replace(tzinfo=UTC) if t.tzinfo is None else t
    return int(aware.timestamp() * 1000)
