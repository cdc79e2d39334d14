"""`ReplayExchange`: a loaded `Recording` served through ccxt.pro's methods on a replay clock.

The clock, the watch cursors and the order in which concurrent watch calls are served live here; what was
recorded lives in `recording.Recording`, and the ccxt structures are built by `structures`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ConfigError, ReplayConfig, parse_utc_ms
from ..base import EndOfData
from . import structures
from .formats import FORMATS, timeframe_name, timeframe_seconds
from .parsers import ParsedFile
from .recording import Recording
from .structures import iso8601


@dataclass
class _Cursor:
    """One watch subscription's position in its series."""

    times: np.ndarray  # delivery times, ascending
    records: np.ndarray
    pos: int = 0
    active: bool = False  # a consumer has called it (and has not been skipped as stalled)
    in_call: int = 0  # watch calls of it in progress: a consumer waiting here has not gone away

    @property
    def next_time(self) -> float:
        return float(self.times[self.pos]) if self.pos < len(self.times) else math.inf


# How long (wall) an earlier stream's consumer may stay away between calls before it is skipped. Long enough
# for a busy consumer on a loaded machine (skipping it lets the clock run ahead of its data), short enough that
# a stream nobody reads any more costs one pause.
_STALL_WAIT_S = 1.0


class ReplayExchange:
    """A ccxt.pro-shaped exchange replaying a recording (see the package docstring)."""

    def __init__(
        self,
        exchange_id: str,
        path: str | Path,
        *,
        format: str = "landing",  # noqa: A002 - the config field's name
        speed: float = 0.0,
        symbols: Sequence[str] | None = None,
        batch_size: int = 1000,
        start_ms: int | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"replay.format: unknown format {format!r}; expected one of {list(FORMATS)}")
        if not speed >= 0 or not math.isfinite(speed):
            raise ConfigError(f"replay.speed: {speed!r} must be >= 0 (0 = as fast as possible)")
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size!r} must be >= 1")
        self.id = exchange_id
        self.name = f"replay:{exchange_id}"
        self.path = Path(path)
        self.format = format
        self.speed = float(speed)
        self.from_ms = start_ms  # replay from this time (earlier records are skipped); None: the recording's start
        self.batch_size = int(batch_size)
        self.requested_symbols = tuple(symbols) if symbols else None
        self.markets: dict[str, dict[str, Any]] = {}
        self.symbols: list[str] = []
        self.timeframes = {timeframe_name(s): timeframe_name(s) for s in (60, 300, 900, 3600, 14400, 28800, 86400)}
        self.has: dict[str, bool] = {
            "watchTrades": True,
            "watchTicker": True,
            "watchOHLCV": True,
            "watchFundingRate": True,
            "watchMarkPrice": False,
            "fetchOHLCV": True,
            "fetchTrades": True,
            "fetchFundingRate": True,
            "fetchFundingRateHistory": True,
            "fetchFundingRates": False,
            # landed open interest and liquidation prints, each delivered at its time
            "watchOpenInterest": True,
            "watchLiquidations": True,
        }
        # Whatever the venue, recorded funding is replayed through watch_funding_rate (the Feed reads this).
        self.funding_via = "funding_rate"
        self.quotes_via = "ticker"  # recorded tickers carry the quotes they landed with
        self.liquidation_side = "position"  # replayed prints say the liquidated position's side, whatever the venue
        self._recording = Recording(exchange_id, path, format, symbols)
        self._cursors: dict[tuple[Any, ...], _Cursor] = {}
        self._loaded = False
        self._load_lock = threading.Lock()  # many first calls may arrive at once: the recording loads once
        self._closed = False
        self._clock_ms = 0
        self._start_ms = 0
        self._end_ms = 0
        self._anchor: float | None = None
        self._progress: asyncio.Event | None = None

    @property
    def unrecognized(self) -> list[tuple[Path, str]]:
        """Files skipped while loading, with the reason."""
        return self._recording.unrecognized

    @property
    def rejected(self) -> dict[Path, ParsedFile]:
        """Files that had quarantined rows."""
        return self._recording.rejected

    @property
    def available(self) -> set[str]:
        """Every symbol the recording holds for this exchange (files)."""
        return self._recording.available

    @classmethod
    def from_config(
        cls, exchange_id: str, replay: ReplayConfig, symbols: Sequence[str] | None = None
    ) -> ReplayExchange:
        if not replay.path:
            raise ConfigError("replay.path: required when source is 'replay'")
        if not Path(replay.path).exists():
            raise ConfigError(f"replay.path: {replay.path!r} does not exist")
        start = parse_utc_ms(replay.start, "replay.start") if replay.start else None
        return cls(exchange_id, replay.path, format=replay.format, speed=replay.speed, symbols=symbols, start_ms=start)

    # -- loading ------------------------------------------------------------------------------------
    async def load_markets(self, reload: bool = False, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read the recording (once: `reload` cannot rewind a replay in progress) and return its markets."""
        if not self._loaded:
            await asyncio.to_thread(self._load_once)
        return self.markets

    def _load_once(self) -> None:
        with self._load_lock:
            if not self._loaded:
                self._load()

    def _load(self) -> None:
        self._recording.load()
        self.markets = self._recording.markets
        self.symbols = sorted(self.markets)
        self._start_ms, self._end_ms = self._recording.start_ms, self._recording.end_ms
        if self.from_ms is not None:
            self._start_ms = max(self._start_ms, int(self.from_ms))
        self._clock_ms = self._start_ms
        self._loaded = True

    # -- clock ----------------------------------------------------------------------------------------
    def milliseconds(self) -> int:
        """The replay clock: wall-paced from the first watch call, or the last delivered event at speed 0.

        Asked before anything was loaded (a consumer reading the clock first), it loads the recording so the
        answer is the recording's start, never 0 or the wall time.
        """
        if not self._loaded:
            self._load_once()
        if self.speed > 0 and self._anchor is not None:
            return int(self._start_ms + (time.monotonic() - self._anchor) * 1000.0 * self.speed)
        return int(self._clock_ms)

    def start_clock(self, anchor: float) -> None:
        """Pace the replay from `anchor` (a `time.monotonic()` value) rather than from its first watch call, so
        that replays of several venues read one clock."""
        self._anchor = anchor

    def iso8601(self, timestamp: int | None) -> str | None:
        return iso8601(timestamp)

    @property
    def start_ms(self) -> int:
        return self._start_ms

    @property
    def end_ms(self) -> int:
        return self._end_ms

    # -- watch --------------------------------------------------------------------------------------
    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise EndOfData(f"replay {self.id}: the exchange is closed")
        if not self._loaded:
            await self.load_markets()

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self.markets:
            raise ValueError(f"symbol: {symbol!r} is not in the {self.id} recording; it holds {self.symbols}")

    def _cursor(self, key: tuple[Any, ...], what: str) -> _Cursor:
        cursor = self._cursors.get(key)
        if cursor is None:
            records = self._recording.series_of(key)
            if records is None:
                raise EndOfData(f"replay {self.id}: no {what} recorded for {key[0]} in {str(self.path)!r}")
            times = self._recording.delivery(key, records)
            first = int(np.searchsorted(times, self._start_ms, side="left"))  # the replay's start, if later
            cursor = self._cursors[key] = _Cursor(times=times, records=records, pos=first)
        return cursor

    async def _next_batch(self, key: tuple[Any, ...], what: str, limit: int) -> np.ndarray:
        await self._ensure_loaded()
        self._check_symbol(key[0])
        cursor = self._cursor(key, what)
        cursor.active = True
        if self._progress is None:
            self._progress = asyncio.Event()
        if cursor.pos >= len(cursor.times):
            cursor.active = False
            raise EndOfData(
                f"replay {self.id}: no more {what} for {key[0]} (the recording ends at {iso8601(self._end_ms)})"
            )
        due = cursor.next_time
        cursor.in_call += 1
        try:
            if self.speed > 0:
                if self._anchor is None:
                    self._anchor = time.monotonic()
                wait_ms = due - self.milliseconds()
                await asyncio.sleep(wait_ms / 1000.0 / self.speed if wait_ms > 0 else 0)
                horizon = max(float(self.milliseconds()), due)
            else:
                horizon = await self._wait_turn(key, cursor)
        finally:
            cursor.in_call -= 1
        # From here to the return nothing awaits: a cancelled call never takes a batch.
        end = int(np.searchsorted(cursor.times, horizon, side="right"))
        end = max(min(end, cursor.pos + limit), cursor.pos + 1)
        batch = cursor.records[cursor.pos : end]
        self._clock_ms = max(self._clock_ms, int(cursor.times[end - 1]))
        cursor.pos = end
        self._progress.set()
        return batch

    async def _wait_turn(self, key: tuple[Any, ...], cursor: _Cursor) -> float:
        """At speed 0: let consumers of earlier events go first; returns the time this batch may reach."""
        assert self._progress is not None
        await asyncio.sleep(0)  # always let other consumers run: a replay must not starve the event loop
        while True:
            others = [c for k, c in self._cursors.items() if k != key and c.active and c.next_time < math.inf]
            earliest = min((c.next_time for c in others), default=math.inf)
            if cursor.next_time <= earliest:
                return earliest if earliest < math.inf else math.inf
            self._progress.clear()
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that races the event, and a
            # call the consumer cancelled must never go on to take a batch it will not receive.
            waiter = asyncio.ensure_future(self._progress.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=_STALL_WAIT_S)
            finally:
                if not waiter.done():
                    waiter.cancel()
            if not done:
                for other in others:  # their consumers went away: stop waiting for them until they return
                    if other.next_time < cursor.next_time and not other.in_call:
                        other.active = False

    async def watch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        batch = await self._next_batch((symbol, "trades"), "trades", limit or self.batch_size)
        return [structures.trade(symbol, r) for r in batch]

    async def watch_ticker(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        batch = await self._next_batch((symbol, "tickers"), "tickers", 1)
        return structures.ticker(symbol, batch[0])

    async def watch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[list[float]]:
        tf = timeframe_seconds(timeframe)
        batch = await self._next_batch((symbol, "ohlcv", tf), f"{timeframe} candles", limit or self.batch_size)
        return [structures.candle(r) for r in batch]

    async def watch_funding_rate(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        await self._ensure_loaded()
        self._recording.prepare_funding_watch(symbol)
        batch = await self._next_batch((symbol, "funding_watch"), "funding rates", 1)
        return structures.funding_rate(symbol, batch[0])

    async def watch_open_interest(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        batch = await self._next_batch((symbol, "open_interest"), "open interest", 1)
        return structures.open_interest(symbol, batch[0])

    async def watch_liquidations(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        batch = await self._next_batch((symbol, "liquidations"), "liquidations", limit or self.batch_size)
        return [structures.liquidation(symbol, r) for r in batch]

    # -- fetch ----------------------------------------------------------------------------------------
    def _window(self, records: np.ndarray, since: int | None, limit: int | None, params: dict | None) -> np.ndarray:
        ts = records["ts_ms"]
        lo = int(np.searchsorted(ts, since, side="left")) if since is not None else 0
        until = (params or {}).get("until")
        hi = int(np.searchsorted(ts, int(until), side="right")) if until is not None else len(ts)
        out = records[lo:hi]
        if limit is not None:
            out = out[:limit] if since is not None else out[-limit:]
        return out

    async def fetch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        await self._ensure_loaded()
        self._check_symbol(symbol)
        records = self._recording.series.get((symbol, "trades"))
        if records is None:
            return []
        return [structures.trade(symbol, r) for r in self._window(records, since, limit, params)]

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[list[float]]:
        await self._ensure_loaded()
        self._check_symbol(symbol)
        key = (symbol, "ohlcv", timeframe_seconds(timeframe))
        records = self._recording.series_of(key)
        if records is None:
            return []
        return [structures.candle(r) for r in self._window(records, since, limit, params)]

    async def fetch_funding_rate_history(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._ensure_loaded()
        if symbol is None:
            raise ValueError("symbol: fetch_funding_rate_history needs a symbol")
        self._check_symbol(symbol)
        records = self._recording.series.get((symbol, "funding"))
        if records is None:
            return []
        settled = records[records["is_settled"] == 1]
        settled = settled[np.argsort(settled["funding_ts_ms"], kind="stable")]
        view = settled.copy()
        view["ts_ms"] = settled["funding_ts_ms"]  # history is keyed by settlement time
        return [structures.funding_history_entry(symbol, r) for r in self._window(view, since, limit, params)]

    async def fetch_funding_rate(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The latest funding value known at the replay clock."""
        await self._ensure_loaded()
        self._check_symbol(symbol)
        records = self._recording.series.get((symbol, "funding"))
        if records is None or not len(records):
            raise EndOfData(f"replay {self.id}: no funding rates recorded for {symbol}")
        idx = max(int(np.searchsorted(records["ts_ms"], self.milliseconds(), side="right")) - 1, 0)
        return structures.funding_rate(symbol, records[idx])

    async def close(self) -> None:
        self._closed = True
        if self._progress is not None:
            self._progress.set()
