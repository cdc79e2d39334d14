"""A half-open event-time window [start, end) (UTC) and the parameters the SQL files bind for it.

What a run's partitions cover (`defs/partitions.partition_window` makes one from a run's keys); plain Python, so
core's SQL callers and their tests take it without Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .units import HOUR_MS


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


def _naive(ms: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=int(ms))


def _epoch_ms(t: datetime) -> int:
    aware = t.replace(tzinfo=UTC) if t.tzinfo is None else t
    return int(aware.timestamp() * 1000)
