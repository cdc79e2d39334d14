"""The Feed's REST side: paced and retried calls, REST history by pages, and trades/OHLCV gap backfills.

`RestHistory` is mixed into `feed.Feed` (it reads the Feed's exchange, registry, validator, counts and clock);
`Batch` is what both sides yield.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ccxt
import numpy as np
from ccxt.async_support.base.exchange import Exchange as AsyncExchange

from .. import schema
from ..schema import EventKind
from . import intervals, normalize
from .base import EndOfData
from .validation import Validator, concat_events, event_rows

# Errors after which a subscription is retried: ccxt's network family (ExchangeNotAvailable, RequestTimeout,
# DDoSProtection... are subclasses), socket-level timeouts, and an unsubscribe racing a restart.
RETRYABLE: tuple[type[BaseException], ...] = (
    ccxt.NetworkError, ccxt.UnsubscribeError, asyncio.TimeoutError, TimeoutError, ConnectionError
)  # fmt: skip
# A recorded source is exhausted: EndOfData (replays), EOFError (wire replay's EndOfRecording).
END_OF_DATA: tuple[type[BaseException], ...] = (EndOfData, EOFError)
_INITIAL_BACKOFF_S = 0.5


_EMPTY: dict[str, np.ndarray] = {}


def _empty(stream: str) -> np.ndarray:
    """A shared read-only zero-length array of a stream (empties are made for every quiet step)."""
    if stream not in _EMPTY:
        array = schema.empty(stream)
        array.flags.writeable = False
        _EMPTY[stream] = array
    return _EMPTY[stream]


@dataclass
class Batch:
    """What a source produced for one stream in one step: records of the stream's dtype, plus events."""

    stream: str
    records: np.ndarray  # schema dtype of the stream
    events: np.ndarray  # schema.CAPTURE_EVENTS rows


@dataclass
class HistoryProgress:
    """Progress of one `Feed.history` call (read it while the call runs)."""

    exchange: str
    stream: str
    symbol: str
    since_ms: int
    until_ms: int
    pages: int = 0
    rows: int = 0
    cursor_ms: int = 0
    done: bool = False

    @property
    def fraction(self) -> float:
        span = max(self.until_ms - self.since_ms, 1)
        return min(max((self.cursor_ms - self.since_ms) / span, 0.0), 1.0)


class RestHistory:
    """REST calls of a Feed: `history` (paginated, rate-limit aware, retried) and `backfill_gap`."""

    # the Feed's (see feed.Feed.__init__)
    exchange: Any
    exchange_id: str
    registry: Any
    validator: Validator
    counts: Any
    progress: dict[tuple[str, str], HistoryProgress]
    timeframe_s: int
    ohlcv_timeframe: str
    history_limit: int
    max_retries: int
    max_backoff_s: float
    _pace_lock: asyncio.Lock
    _last_rest_ms: int | None

    async def _pace(self) -> None:
        """Space REST calls by `rateLimit` ms unless ccxt's own throttle (enableRateLimit) already does."""
        ex = self.exchange
        if isinstance(ex, AsyncExchange) and getattr(ex, "enableRateLimit", False):
            return
        rate_limit = getattr(ex, "rateLimit", 0) or 0
        async with self._pace_lock:
            if self._last_rest_ms is not None and rate_limit > 0:
                wait_ms = self._last_rest_ms + rate_limit - self.now_ms()
                if wait_ms > 0:
                    await self._sleep_exchange(wait_ms / 1000.0)
            self._last_rest_ms = self.now_ms()

    async def _rest(self, method: str, *args: Any, retries: int | None = None) -> Any:
        """One REST call, paced, retried (`retries`, default `max_retries`) with exponential back-off on network
        errors."""
        backoff = _INITIAL_BACKOFF_S
        retries = self.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            await self._pace()
            try:
                self.counts["rest:calls"] += 1
                return await getattr(self.exchange, method)(*args)
            except RETRYABLE:
                if attempt == retries:
                    raise
                self.counts["rest:retries"] += 1
                await self._sleep_exchange(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    async def _pages(self, stream: str, symbol: str, since_ms: int, until_ms: int) -> AsyncIterator[list[Any]]:
        """Raw REST pages covering [since_ms, until_ms), rows in range only, each row once per page walk."""
        tf_ms = self.timeframe_s * 1000
        cursor = since_ms
        seen_trade_ids: set[Any] = set()
        while cursor < until_ms:
            try:
                if stream == "ohlcv":
                    rows = await self._rest("fetch_ohlcv", symbol, self.ohlcv_timeframe, cursor, self.history_limit)
                elif stream == "funding":
                    rows = await self._rest("fetch_funding_rate_history", symbol, cursor, self.history_limit)
                else:
                    rows = await self._rest("fetch_trades", symbol, cursor, self.history_limit)
            except END_OF_DATA:
                return
            rows = list(rows or [])
            if stream == "ohlcv":
                times = [normalize.int_ms(r[0]) if isinstance(r, Sequence) and len(r) else 0 for r in rows]
            else:
                times = [normalize.int_ms(r.get("timestamp")) if isinstance(r, Mapping) else 0 for r in rows]
            if stream == "ohlcv":
                now = self.now_ms()  # a candle still forming is not history
                keep = [cursor <= t < until_ms and t + tf_ms <= now for t in times]
            else:
                keep = [cursor <= t < until_ms for t in times]
            page = [r for r, k in zip(rows, keep, strict=True) if k]
            if stream == "trades":
                page = [r for r in page if (r.get("id"), r.get("timestamp")) not in seen_trade_ids]
                seen_trade_ids.update((r.get("id"), r.get("timestamp")) for r in page)
            if page:
                yield page
            in_range = [t for t, k in zip(times, keep, strict=True) if k]
            if not in_range:
                return  # nothing (more) in the window: the venue has no older/newer data to give
            last = max(in_range)
            step = tf_ms if stream == "ohlcv" else (0 if stream == "trades" and page else 1)
            advance = last + step
            if advance <= cursor:
                advance = cursor + 1  # trades sharing one millisecond: move on rather than loop
            cursor = advance

    async def history(self, stream: str, symbol: str, since_ms: int, until_ms: int) -> AsyncIterator[Batch]:
        """REST history of [since_ms, until_ms): closed candles, settled funding (is_settled=1) or trades.

        Paginated, rate-limit aware (ccxt's throttle or `rateLimit` spacing), network errors retried with
        back-off. Validated with the past-time check off (history is old by definition); progress in
        `self.progress[(stream, symbol)]`.
        """
        if stream not in ("ohlcv", "funding", "trades"):
            raise ValueError(f"stream: history has ohlcv, funding and trades, not {stream!r}")
        instrument = self.registry.get(self.exchange_id, symbol)
        if stream == "funding" and not instrument.is_perp:
            raise ValueError(f"symbol: {symbol!r} on {self.exchange_id} is not a perpetual; it has no funding")
        validator = Validator(
            max_future_ms=self.validator.max_future_ms,
            max_past_ms=None,
            max_abs_funding_rate=self.validator.max_abs_funding_rate,
        )
        progress = HistoryProgress(self.exchange_id, stream, symbol, since_ms, until_ms, cursor_ms=since_ms)
        self.progress[(stream, symbol)] = progress
        previous_settlement: int | None = None
        previous_interval = math.nan
        async for page in self._pages(stream, symbol, since_ms, until_ms):
            recv = self.now_ms()
            # rows were asked for up to until_ms: a replay's clock may not have started, that is not "future"
            check_now = max(recv, until_ms - 1)
            page, screened = validator.screen(stream, page, instrument.id, check_now)
            if stream == "ohlcv":
                records = normalize.ohlcv_to_records(page, instrument, recv, self.timeframe_s)
            elif stream == "trades":
                records = normalize.trades_to_records(page, instrument, recv)
            else:
                page = sorted(page, key=lambda r: normalize.int_ms(r.get("timestamp")))
                interval_hs = intervals.settled_intervals(
                    page, self._book(symbol), self._market(symbol), previous_settlement, previous_interval
                )
                records = normalize.funding_history_to_records(page, instrument, recv, interval_hs)
                if len(records):
                    previous_settlement = int(records["funding_ts_ms"].max())
                    previous_interval = float(records["interval_h"][-1])
            accepted, checked = validator.check(stream, records, check_now)
            progress.pages += 1
            progress.rows += len(accepted)
            if len(records):
                progress.cursor_ms = max(progress.cursor_ms, int(records["ts_ms"].max()))
            self.counts[f"history:{stream}"] += len(accepted)
            for reason, n in validator.counts.items():  # the history validator is separate: keep its counts visible
                self.counts[f"history:{reason}"] = n
            yield Batch(stream, accepted, concat_events([screened, checked]))
        progress.cursor_ms = until_ms
        progress.done = True

    async def backfill_gap(self, stream: str, symbol: str, start_ms: int, end_ms: int) -> Batch:
        """Fill a trades/ohlcv gap over REST, skipping what was already emitted; a GAP_FILLED event if filled.

        When the venue has no such endpoint or the call fails the batch is empty and no GAP_FILLED event is
        written: the GAP event already recorded stays the visible truth. `reason` says `rest` when the REST
        data reaches back to the gap's start, `rest:partial` when it does not.
        """
        if stream not in ("trades", "ohlcv"):
            raise ValueError(f"stream: only trades and ohlcv gaps can be backfilled, not {stream!r}")
        sub = self._subscription(stream, symbol)
        instrument = sub.instrument
        now = self.now_ms()
        if not self._has("fetchTrades" if stream == "trades" else "fetchOHLCV"):
            self.counts["gaps:unfillable"] += 1
            return Batch(stream, _empty(stream), _empty("capture_events"))
        tf_ms = self.timeframe_s * 1000
        since = (start_ms // tf_ms) * tf_ms if stream == "ohlcv" else start_ms
        rows: list[Any] = []
        try:
            async for page in self._pages(stream, symbol, since, end_ms + (0 if stream == "ohlcv" else 1)):
                rows.extend(page)
        except (*RETRYABLE, *END_OF_DATA, ccxt.ExchangeError):
            self.counts["gaps:unfillable"] += 1
            return Batch(stream, _empty(stream), _empty("capture_events"))
        rows, screened = self.validator.screen(stream, rows, instrument.id, now)
        if stream == "ohlcv":
            records = normalize.ohlcv_to_records(rows, instrument, now, self.timeframe_s)
            fetched_ts = records["ts_ms"]
            records = records[~np.isin(records["ts_ms"], np.fromiter(sub.candles.emitted, np.int64))]
            accepted, checked = self.validator.check(stream, records, now, sequence=False)
            sub.candles.emitted.update(int(t) for t in accepted["ts_ms"])
            covered = len(fetched_ts) and int(fetched_ts.min()) <= since
        else:
            records = normalize.trades_to_records(rows, instrument, now)
            fetched_ts = records["ts_ms"]
            # The REST window overlaps what the stream delivered (the gap starts at its last trade): those
            # are ours already, not venue duplicates; and a backfill is older than the stream by definition.
            fresh = [not self.validator.seen_trade(instrument.id, t) for t in records["trade_id"].tolist()]
            accepted, checked = self.validator.check(stream, records[np.array(fresh, dtype=bool)], now, order=False)
            covered = len(fetched_ts) and int(fetched_ts.min()) <= start_ms
        events = [screened, checked]
        if len(fetched_ts):
            self.counts["gaps:filled"] += 1
            events.append(
                event_rows(
                    EventKind.GAP_FILLED,
                    stream,
                    instrument.id,
                    now,
                    now,
                    count=len(accepted),
                    start_ms=start_ms if covered else int(fetched_ts.min()),
                    end_ms=end_ms,
                    reason="rest" if covered else "rest:partial",
                )
            )
        else:
            self.counts["gaps:unfillable"] += 1
        order = np.argsort(accepted["ts_ms"], kind="stable")
        return Batch(stream, accepted[order], concat_events(events))
