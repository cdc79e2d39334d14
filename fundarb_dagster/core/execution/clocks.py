"""The trader's time: the venue's clock, and how to wait for a moment on it.

- `VenueClock`: the venue's `milliseconds()` (wall time on a live exchange, the simulator's market time),
  waiting in wall time at the venue's speed (`speed` market ms per wall ms, 1 live).
- `SteppedClock`: for simulator runs in this process, a pinned clock the trader moves itself: waiting until
  `t` sets every simulated venue's clock to `t` (`SimExchange.clock.now_ms`). Nothing happens between two
  steps, so a multi-day run takes as long as its work, and the run is repeatable. The trader's loop steps by
  its poll interval while orders are in flight, so the venue's order latency and the leg timeout are seen as
  they would be live; it jumps to the next decision or reconciliation when nothing is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol


class TraderClock(Protocol):
    def now(self) -> int: ...

    async def sleep_until(self, t_ms: int) -> None: ...

    async def wait_for(self, t_ms: int) -> None:
        """Until the clock reads `t_ms`, for a task beside the trader's loop (it never moves the clock)."""
        ...


class VenueClock:
    def __init__(self, venue: Any, speed: float | None = None) -> None:
        self.venue = venue
        self.speed = float(speed if speed is not None else getattr(venue, "speed", 1.0) or 1.0)

    def now(self) -> int:
        return int(self.venue.milliseconds())

    async def sleep_until(self, t_ms: int) -> None:
        await asyncio.sleep(max(0.0, (t_ms - self.now()) / self.speed / 1000.0))

    async def wait_for(self, t_ms: int) -> None:
        await self.sleep_until(t_ms)


class SteppedClock:
    def __init__(self, venues: Iterable[Any], start_ms: int) -> None:
        self.venues = list(venues)
        self.t = int(start_ms)
        self._moved = asyncio.Event()
        self._pin()

    def _pin(self) -> None:
        for venue in self.venues:
            venue.clock.now_ms = self.t

    def now(self) -> int:
        return self.t

    async def sleep_until(self, t_ms: int) -> None:
        self.t = max(self.t, int(t_ms))
        self._pin()
        self._moved.set()  # wake the tasks waiting for a time (`wait_for`)
        self._moved = asyncio.Event()
        await asyncio.sleep(0)  # let the venues' tasks see the new time

    async def wait_for(self, t_ms: int) -> None:
        """Woken each time the trader moves the clock, so a wait ends at the same step in every run."""
        while self.t < t_ms:
            await self._moved.wait()
