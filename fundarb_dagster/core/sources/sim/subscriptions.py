"""The virtual clock and the delivery state of each subscription: what is due, what was lost, what was sent.

Pacing: `sim.speed` market seconds per wall second. A watch call returns at once what is due up to the
virtual now, else sleeps until the next event. Every event after a subscription's first call is either
sent (counted in `emitted`), or counted in `lost[(reason, stream, symbol)]` (a disconnect until the
re-subscription, a stale period, an unwatch); `conflated[(stream, symbol)]` counts ticker/funding/ohlcv
states overwritten before a call picked them up (ccxt.pro keeps only the latest state of those streams too).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np

from ...units import HOUR_MS
from .draws import iso
from .faults import FaultPlan
from .market_data import MarketData
from .markets import Market
from .positioning import Positioning


class Clock:
    """Market time: `start_ms` plus wall time since the clock started, x `speed`; standing at `now_ms` if set.

    The clock starts at its first reading, or at `wall_start` (epoch seconds) so processes can share it."""

    def __init__(self, start_ms: int, speed: float, now_ms: int | None = None, wall_start: float | None = None):
        self.start_ms = start_ms
        self.speed = speed
        self.now_ms = now_ms
        self.wall0 = wall_start

    def milliseconds(self) -> int:
        if self.now_ms is not None:
            return self.now_ms
        if self.wall0 is None:
            self.wall0 = time.time()
        return self.start_ms + int((time.time() - self.wall0) * self.speed * 1000.0)

    async def wait_until(self, target_ms: int) -> None:
        now = self.milliseconds()
        await asyncio.sleep(max(0.0, (target_ms - now) / self.speed / 1000.0))


@dataclass
class Stream:
    first: int | None = None  # the first subscription's time
    cursor: int | None = None  # every event at or before this time is handled
    lost_from: int | None = None  # after a disconnect/unwatch: events after this are lost until re-subscription
    lost_reason: str = "disconnect"
    pending: deque = field(default_factory=deque)
    last_msg: Any = None
    ohlcv_bucket: int | None = None
    last_closed: list[float] | None = None


class Subscriptions:
    """Each (stream, symbol) subscription's cursor, and the counters of what was sent, lost and conflated."""

    def __init__(
        self, exchange_id: str, clock: Clock, data: MarketData, faults: FaultPlan, prints: Positioning | None = None
    ) -> None:
        self.exchange_id = exchange_id
        self.prints = prints  # liquidation prints: events at their own times, like trades
        self.clock = clock
        self.data = data
        self.faults = faults
        self.streams: dict[tuple[str, str], Stream] = {}
        self.emitted: Counter = Counter()
        self.lost: Counter = Counter()
        self.conflated: Counter = Counter()
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise ccxt.ExchangeClosedByUser(f"sim {self.exchange_id}: closed")

    def stream(self, key: tuple[str, str]) -> Stream:
        return self.streams.setdefault(key, Stream())

    # -- event times ----------------------------------------------------------------------------------
    def count_events(self, stream: str, m: Market, lo: int, hi: int, grid: int) -> int:
        if hi <= lo:
            return 0
        if stream == "trades":
            return sum(idx.size for _, _, idx in self.data.trades_between(m, lo, hi))
        if stream == "liquidations" and self.prints is not None:
            return int(self.prints.times_between(m, lo, hi).size)
        return hi // grid - lo // grid

    def count_stale_events(self, stream: str, m: Market, lo: int, hi: int, grid: int) -> int:
        stale = self.faults.stale(stream, m)
        if stale is None or hi <= lo:
            return 0
        mask = self.faults.stale_mask
        if stream == "trades":
            return sum(int(mask(stale, c.ts[idx]).sum()) for c, _, idx in self.data.trades_between(m, lo, hi))
        if stream == "liquidations" and self.prints is not None:
            return int(mask(stale, self.prints.times_between(m, lo, hi)).sum())
        first, last = lo // grid + 1, hi // grid
        if last < first:
            return 0
        return int(mask(stale, np.arange(first, last + 1, dtype=np.int64) * grid).sum())

    def next_event(self, stream: str, m: Market, after: int, grid: int) -> int | None:
        """The first event after `after` outside stale windows."""
        stale = self.faults.stale(stream, m)
        t = after
        for _ in range(10_000):
            if stream == "liquidations" and self.prints is not None:
                e = self.prints.next_time(m, t)
            else:
                e = self.data.next_trade(m, t) if stream == "trades" else (t // grid + 1) * grid
            if e is None:
                return None
            end = self.faults.stale_end(stale, e)
            if end is None:
                return e
            t = end - 1
        return None

    # -- delivery -------------------------------------------------------------------------------------
    async def due(self, key: tuple[str, str], stream: str, m: Market, grid: int) -> tuple[Stream, int, int]:
        """Wait until events are due on a subscription; returns (state, lo, hi): deliver events in (lo, hi].

        Raises ccxt.NetworkError at a scheduled disconnect (ccxt.InvalidNonce at a broken book sequence) once
        everything before it was delivered.
        """
        st = self.stream(key)
        while True:
            self.check_open()
            now = self.clock.milliseconds()
            if st.cursor is None:
                if st.lost_from is not None:
                    lost = self.count_events(stream, m, st.lost_from, now, grid)
                    self.lost[(st.lost_reason, stream, m.symbol)] += lost
                    # Stale windows that began while unsubscribed still count: the stream went silent.
                    windows = self.faults.count_stale_windows(self.faults.stale(stream, m), st.lost_from, now)
                    if windows:
                        self.faults.injected[("stale", stream, m.symbol)] += windows
                    st.lost_from = None
                st.cursor = now
                if st.first is None:
                    st.first = now
            c = st.cursor
            d, fault = self.faults.next_break(stream, m, c)
            e = self.next_event(stream, m, c, grid)
            if d is not None and d <= now and (e is None or e >= d):
                self.account_stale(stream, m, c, d - 1, grid)
                st.cursor = None
                st.lost_from = d - 1
                st.lost_reason = fault
                st.pending.clear()
                st.ohlcv_bucket = None  # a re-subscription starts from the current candle
                self.faults.injected[(fault, stream, m.symbol)] += 1
                if fault == "sequence":
                    raise ccxt.InvalidNonce(f"sim {self.exchange_id}: {m.symbol} book sequence broken at {iso(d)}")
                raise ccxt.NetworkError(f"sim {self.exchange_id}: connection lost on {stream} {m.symbol} at {iso(d)}")
            if e is not None and e <= now:
                hi = now if d is None or d > now else d - 1
                return st, c, hi
            targets = [x for x in (e, d) if x is not None]
            await self.clock.wait_until(min(targets) if targets else now + HOUR_MS)

    async def due_latest(self, key: tuple[str, str], stream: str, m: Market, grid: int) -> tuple[Stream, int]:
        """For a latest-state stream (ticker, funding, ohlcv): wait until an update is due, take the latest
        one (its grid time), count the ones it overwrote as conflated and the stale ones as lost."""
        st, lo, hi = await self.due(key, stream, m, grid)
        t = self.latest_grid(stream, m, lo, hi, grid)
        total = self.count_events(stream, m, lo, hi, grid) - self.count_stale_events(stream, m, lo, hi, grid)
        if total > 1:
            self.conflated[(stream, m.symbol)] += total - 1
        self.account_stale(stream, m, lo, hi, grid)
        st.cursor = hi
        return st, t

    def account_stale(self, stream: str, m: Market, lo: int, hi: int, grid: int) -> None:
        stale = self.faults.stale(stream, m)
        if stale is None or hi <= lo:
            return
        windows = self.faults.count_stale_windows(stale, lo, hi)
        if windows:
            self.faults.injected[("stale", stream, m.symbol)] += windows
        lost = self.count_stale_events(stream, m, lo, hi, grid)
        if lost:
            self.lost[("stale", stream, m.symbol)] += lost

    def latest_grid(self, stream: str, m: Market, lo: int, hi: int, grid: int) -> int:
        """The latest grid time in (lo, hi] outside stale windows (one exists: `due` said an event is due)."""
        stale = self.faults.stale(stream, m)
        t = hi // grid * grid
        while t > lo:
            if self.faults.stale_end(stale, t) is None:
                return t
            t -= grid
        raise AssertionError("no due event")  # pragma: no cover - due guarantees one

    def unwatch(self, key: tuple[str, str]) -> None:
        """Drop a subscription: the next watch call subscribes afresh at the then-current time, and the
        events in between are counted in `lost[('unwatch', ...)]`."""
        st = self.streams.get(key)
        if st is None or st.cursor is None:
            return
        st.lost_from, st.lost_reason, st.cursor = st.cursor, "unwatch", None
        st.pending.clear()
        st.ohlcv_bucket = None

    def served_range(self, stream: str, symbol: str) -> tuple[int, int] | None:
        """(first subscription time, time served up to) of a subscription, None before any."""
        st = self.streams.get((stream, symbol))
        if st is None or st.first is None:
            return None
        return st.first, st.cursor if st.cursor is not None else (st.lost_from or st.first)
