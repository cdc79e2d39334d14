"""Feed: the one consumer of every source. ccxt.pro-shaped calls in, validated record batches out.

`exchange` is any object that speaks ccxt.pro (a live `ccxt.pro` instance, `SimExchange`, `ReplayExchange`,
a wire replay exchange, a real ccxt class fed recorded REST responses): the same code runs for all of them,
so the capture job, the history loader and the demo never know where data came from.

    feed = Feed(exchange, registry)
    async for batch in feed.watch("trades", "BTC/USDT:USDT"):   # runs until cancelled (or EndOfData)
        ring.put(batch.records); events.put(batch.events)

What `watch` does, per (stream, symbol):

- calls the right `watch_*` (funding per venue: binance* `watch_mark_price`; bybit and hyperliquid funding
  inside `watch_ticker`'s `info`; anything with `has['watchFundingRate']` `watch_funding_rate`; otherwise
  `fetch_funding_rate` polled every `funding_poll_interval_s`; quotes (the tickers stream) from the venue's
  best bid/offer channel where its ticker carries none: `watch_bids_asks`, or the top of `watch_order_book`);
  a CHANNEL event at the start of each subscription names the call (and ccxt's channel option, if set);
- normalizes (`normalize.py`) and validates (`validation.py`): bad messages are quarantined with a reason and
  counted, venue duplicates dropped (trade ids; tickers/funding with an identical timestamp);
- OHLCV: a candle is emitted once, when it is closed (a newer candle appeared), with its final values;
- open interest (`fetch_open_interest` polled where ccxt.pro streams none), liquidations: `positioning.py`;
- order books: sampled snapshots of `watch_order_book` (`books.BookSampler`); a broken venue sequence (ccxt's
  `InvalidNonce`/`ChecksumError`) or a nonce that goes back is a GAP (reason `sequence`); a streamed book's
  gap is repaired at once by one `fetch_order_book` snapshot where the venue has it (`from_rest` = 1), and
  `book_rest_interval_s` > 0 polls `fetch_order_book` instead of streaming;
- funding rows carry the interval in force, decided by the one rule in `intervals.py` (stated by the
  structure, the registry's history, the market, the spacing of settlements; recorded with
  `registry.observe_interval`); never a per-venue constant. Funding snapshots that repeat the previous one
  are thinned to one per `funding_poll_interval_s` (counted);
- settled funding: once the stream names a later settlement, the one it moved past is settled; its rate is
  fetched with `fetch_funding_rate_history` where the venue has it and emitted as a settled row
  (`is_settled=1`) *before* the row that names the next settlement, so a consumer knows the venue's final
  rate when it learns the interval is over (a capture that missed the interval's last prediction still
  records what the venue paid). Not published yet: retried every `funding_poll_interval_s` for
  `SETTLED_WAIT_MS`, then counted (`funding:settled_missing`) and the predictions stand;
- `ccxt.NetworkError` (incl. `ExchangeNotAvailable`, `RequestTimeout`) and socket timeouts: a RECONNECT event,
  exponential back-off up to `max_backoff_s`, and a GAP event (start = last data time, end = first data
  time after recovery) once data flows again; trades/OHLCV gaps are then backfilled over REST where the
  venue has it (GAP_FILLED event), otherwise the gap stays visible;
- a staleness watchdog per stream (`stale_timeout_s[stream]`, on the exchange's clock so a sped-up simulator
  works): a STALE event, then the subscription is restarted (ccxt.pro streams can stop without an error);
  restarts while the same silence lasts add no further STALE event (one per silent stretch; the GAP event
  that closes it counts the restarts).
- a gap still open when a recorded source ends is written then (it would otherwise vanish);
- `stage_records` > 0 (the capture job): tickers and trades are staged and processed a batch at a time
  (`staging.py`, same records and events), flushed by count, age, a failure, the end, or `drain()`;
- REST history and trades/OHLCV backfills: `rest_history.RestHistory`, mixed in.

Times: `recv_ts_ms` and every timeout/back-off/poll period are on `exchange.milliseconds()` (wall time live,
virtual time in the simulator, the recording's time in replays). Waits are also bounded in wall time, so a
replay whose clock stops cannot hang the feed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np
from ccxt.async_support.base.exchange import Exchange as AsyncExchange

from .. import schema
from ..instruments import Instrument, InstrumentRegistry
from ..schema import EventKind
from ..venues import FUNDING_CHANNELS, QUOTE_CHANNELS, venue_facts
from . import intervals, normalize, positioning, staging
from .answers import answered
from .books import BookSampler, book_limit, book_top, rest_book_limit
from .candles import CandleState
from .positioning import OpenInterestState
from .rest_history import _INITIAL_BACKOFF_S, END_OF_DATA, RETRYABLE, Batch, HistoryProgress, RestHistory, _empty
from .staging import STAGED_STREAMS, Staged
from .unwatch import unwatch
from .validation import Validator, concat_events, event_rows

# Errors that retrying cannot fix: configuration and permission problems. They end the watch with the error.
FATAL: tuple[type[BaseException], ...] = (
    ccxt.AuthenticationError,
    ccxt.PermissionDenied,
    ccxt.AccountSuspended,
    ccxt.BadSymbol,
    ccxt.NotSupported,
    ccxt.ArgumentsRequired,
)
DEFAULT_STALE_TIMEOUT_S: dict[str, float] = {"trades": 60.0, "tickers": 60.0, "funding": 900.0, "ohlcv": 180.0,
                                             "order_book": 60.0}  # fmt: skip
# A venue's book sequence broken (ccxt checks binance's `pu`, okx's `prevSeqId` and checksum): the book is
# rebuilt from a new snapshot, and the stretch in between is a GAP (reason `sequence`).
SEQUENCE_ERRORS: tuple[type[BaseException], ...] = (ccxt.InvalidNonce, ccxt.ChecksumError)
FUNDING_MODES = (*FUNDING_CHANNELS, "poll")  # a venue's channel, or polling `fetch_funding_rate`
SETTLED_WAIT_MS = 3_600_000  # how long after a settlement its settled rate is asked for (venues publish late)
SETTLED_MATCH_MS = 900_000  # a history row this near a named settlement is it (venues stamp with jitter)


class _Stale(Exception):  # noqa: N818 - internal signal, never escapes the feed
    pass


@dataclass
class _Subscription:
    stream: str
    symbol: str
    instrument: Instrument
    mode: str = ""  # funding: FUNDING_MODES; tickers: QUOTE_CHANNELS (`order_book:<depth>` with a depth)
    last_top: tuple[float, ...] | None = None  # tickers from a book: the top last emitted
    started_ms: int = 0
    last_activity_ms: int = 0
    last_activity_wall: float = 0.0
    last_data_ts: int | None = None
    gap_start_ms: int | None = None
    gap_reasons: list[str] = field(default_factory=list)
    silent: bool = False  # the staleness watchdog fired and no data came since (restarts stay quiet)
    candles: CandleState | None = None  # ohlcv: the forming candle, the last closed one, every emitted time
    # funding: thinning of repeated snapshots, settlement spacing, polling
    last_funding_key: tuple[float, ...] | None = None
    last_funding_emit_ms: int = 0
    last_settlement_ms: int = 0
    next_poll_ms: int | None = None
    named_settlement_ms: int = 0  # the latest settlement the stream's predictions named
    settled_due: set[int] = field(default_factory=set)  # settlements passed whose settled rate is not fetched yet
    settled_retry_ms: int = 0  # when to ask the venue's history again
    books: BookSampler | None = None  # order_book: sampling and the venue's sequence
    interest: OpenInterestState | None = None  # open_interest: how it is fed, the last value kept
    # the staleness watchdog: its task, the task it watches, since when (monotonic) that waits in a call (0: not
    # waiting), and whether the cancel of that call is the watchdog's
    watchdog: asyncio.Future[None] | None = None
    watched: asyncio.Task[Any] | None = None
    waiting_since: float = 0.0
    stale_cancel: bool = False
    backoff_s: float = _INITIAL_BACKOFF_S  # the next wait after a failed call
    stale_ms: int | None = None  # the watchdog's timeout (exchange ms) for this watch; None: no watchdog
    waited: bool = False  # the last call waited for its answer, giving the loop a turn (see `_await_watched`)
    staged: Staged = field(default_factory=Staged)  # calls not processed yet (a staging Feed's tickers, trades)


def _joined(stream: str, staged: Batch | None, events: np.ndarray | None) -> Batch:
    """A staged batch with the events that follow it (one of them at least)."""
    if staged is None:
        return Batch(stream, _empty(stream), events)
    return Batch(stream, staged.records, staged.events if events is None else concat_events([staged.events, events]))


class Feed(RestHistory):
    """Validated, normalized record batches from any ccxt.pro-shaped exchange object (see the module doc)."""

    def __init__(
        self,
        exchange: Any,
        registry: InstrumentRegistry,
        *,
        funding_poll_interval_s: float = 60.0,
        ohlcv_timeframe: str = "1m",
        stale_timeout_s: Mapping[str, float] | None = None,
        validator: Validator | None = None,
        max_backoff_s: float = 60.0,
        backfill_gaps: bool = True,
        history_limit: int = 1000,
        max_retries: int = 6,
        min_stale_wall_s: float = 0.5,
        book_levels: int = schema.BOOK_LEVELS,
        book_interval_s: float = 10.0,
        open_interest_interval_s: float = 60.0,
        book_rest_interval_s: float = 0.0,
        stage_records: int = 0,
        stage_max_age_s: float = 0.05,
    ) -> None:
        if not funding_poll_interval_s > 0:
            raise ValueError(f"funding_poll_interval_s: {funding_poll_interval_s!r} must be > 0")
        if not max_backoff_s > 0:
            raise ValueError(f"max_backoff_s: {max_backoff_s!r} must be > 0")
        self.exchange = exchange
        self.exchange_id = str(exchange.id)
        self.registry = registry
        self.funding_poll_interval_s = float(funding_poll_interval_s)
        self.ohlcv_timeframe = ohlcv_timeframe
        self.timeframe_s = int(ccxt.Exchange.parse_timeframe(ohlcv_timeframe))
        self.stale_timeout_s = dict(DEFAULT_STALE_TIMEOUT_S if stale_timeout_s is None else stale_timeout_s)
        self.validator = validator if validator is not None else Validator()
        self.max_backoff_s = float(max_backoff_s)
        self.backfill_gaps = backfill_gaps
        self.history_limit = history_limit
        self.max_retries = max_retries
        # A stream is stale after stale_timeout_s on the exchange clock *and* this much wall time: at a high
        # sim speed a busy event loop (a few ms) is minutes of virtual time, and that is not a dead stream.
        self.min_stale_wall_s = float(min_stale_wall_s)
        if not 1 <= book_levels <= schema.BOOK_LEVELS:
            raise ValueError(f"book_levels: {book_levels!r} must be between 1 and {schema.BOOK_LEVELS}")
        if not book_interval_s >= 0:
            raise ValueError(f"book_interval_s: {book_interval_s!r} must be >= 0")
        if not open_interest_interval_s > 0:
            raise ValueError(f"open_interest_interval_s: {open_interest_interval_s!r} must be > 0")
        if not book_rest_interval_s >= 0:
            raise ValueError(f"book_rest_interval_s: {book_rest_interval_s!r} must be >= 0 (0: books streamed)")
        self.book_rest_interval_s = float(book_rest_interval_s)  # > 0: order books polled over REST
        if stage_records < 0 or not stage_max_age_s >= 0:
            raise ValueError(f"stage_records, stage_max_age_s: {stage_records!r}, {stage_max_age_s!r} must be >= 0")
        self.stage_records = int(stage_records)  # > 0: tickers and trades processed a batch at a time (staging.py)
        self.stage_max_age_s = float(stage_max_age_s)
        self.book_levels = int(book_levels)
        self.book_interval_ms = int(book_interval_s * 1000)
        self.open_interest_interval_s = float(open_interest_interval_s)
        self.counts: Counter[str] = Counter()
        self.progress: dict[tuple[str, str], HistoryProgress] = {}
        self._subs: dict[tuple[str, str], _Subscription] = {}
        self._wall0 = time.monotonic()
        self._clock0: int | None = None
        self._pace_lock = asyncio.Lock()
        self._last_rest_ms: int | None = None

    # -- clocks -------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The exchange's clock (wall, virtual or replay time)."""
        now = int(self.exchange.milliseconds())
        if self._clock0 is None:
            self._clock0 = now
            self._wall0 = time.monotonic()
        return now

    def clock_speed(self) -> float:
        """Exchange milliseconds per wall millisecond: a source's `speed` if it states one, else measured."""
        stated = getattr(self.exchange, "speed", None)
        if isinstance(stated, int | float) and not isinstance(stated, bool) and stated > 0:
            return float(stated)
        now = self.now_ms()
        wall_s = time.monotonic() - self._wall0
        if wall_s > 0.5 and self._clock0 is not None and now > self._clock0:
            return max((now - self._clock0) / 1000.0 / wall_s, 1e-3)
        return 1.0

    async def _sleep_exchange(self, seconds: float) -> None:
        """Sleep `seconds` of exchange time; never longer than `seconds` of wall time (a stopped clock)."""
        target = self.now_ms() + int(seconds * 1000)
        wall_deadline = time.monotonic() + seconds
        while True:
            remaining_ms = target - self.now_ms()
            wall_left = wall_deadline - time.monotonic()
            if remaining_ms <= 0 or wall_left <= 0:
                return
            await asyncio.sleep(max(min(remaining_ms / 1000.0 / self.clock_speed(), wall_left, 1.0), 0.0005))

    # -- subscriptions ------------------------------------------------------------------------------
    def funding_mode(self) -> str:
        """How this venue delivers funding: mark_price | ticker | funding_rate | poll.

        A source may state it (`funding_via`: the simulator, replays); else the venue's row in `core/venues.py`
        names its channel, used when the exchange object has the call; else `watch_funding_rate`, else polling.
        """
        stated = getattr(self.exchange, "funding_via", None)
        if stated in FUNDING_MODES:
            return str(stated)
        has = getattr(self.exchange, "has", None) or {}
        facts = venue_facts(self.exchange_id)
        channel = facts.funding_channel if facts is not None else None
        if channel == "mark_price" and (has.get("watchMarkPrice") or has.get("watchMarkPrices")):
            return "mark_price"
        if channel == "ticker" and has.get("watchTicker", True):
            return "ticker"
        if has.get("watchFundingRate"):
            return "funding_rate"
        return "poll"

    def quote_mode(self, instrument: Instrument) -> str:
        """Where an instrument's tickers stream gets its best bid/ask: a QUOTE_CHANNELS entry, `order_book:<n>`
        for a book of depth n.

        A source may state it (`quotes_via`: a mode, or a function of the symbol: the wire replay follows the
        channels its recording subscribed); else the venue's row in `core/venues.py` by market kind; a call
        the exchange object lacks falls back to `watch_ticker`.
        """
        stated = getattr(self.exchange, "quotes_via", None)
        if callable(stated):
            stated = stated(instrument.symbol)
        if isinstance(stated, str) and stated.split(":", 1)[0] in QUOTE_CHANNELS:
            return stated
        facts = venue_facts(self.exchange_id)
        mode = facts.quote_channel("contract" if instrument.is_contract else "spot") if facts else "ticker"
        needs = {"bids_asks": "watchBidsAsks", "order_book": "watchOrderBook"}.get(mode)
        return mode if needs is None or self._has(needs) else "ticker"

    def _subscription(self, stream: str, symbol: str) -> _Subscription:
        key = (stream, symbol)
        if key not in self._subs:
            if stream not in schema.MARKET_STREAMS:
                raise ValueError(f"stream: {stream!r} is not a market stream; expected one of {schema.MARKET_STREAMS}")
            instrument = self.registry.get(self.exchange_id, symbol)
            if stream in schema.PERP_STREAMS and not instrument.is_perp:
                raise ValueError(f"symbol: {symbol!r} on {self.exchange_id} is not a perpetual; it has no {stream}")
            if stream == "liquidations":
                positioning.require_liquidations(self.exchange)
            sub = _Subscription(stream, symbol, instrument)
            if stream == "funding":
                sub.mode = self.funding_mode()
            elif stream == "tickers":
                sub.mode = self.quote_mode(instrument)
            elif stream == "ohlcv":
                sub.candles = CandleState(self.timeframe_s, self._ws_candles_count_contracts)
            elif stream == "order_book":
                sub.books = BookSampler(instrument, self.book_levels, self.book_interval_ms)
                sub.mode = "poll" if self.book_rest_interval_s else ""
            elif stream == "open_interest":
                sub.interest = OpenInterestState(positioning.open_interest_mode(self.exchange, symbol))
            self._subs[key] = sub
        return self._subs[key]

    def _watch_call(self, sub: _Subscription) -> Callable[[], Awaitable[Any]]:
        ex, symbol = self.exchange, sub.symbol
        if sub.stream == "trades":
            return lambda: ex.watch_trades(symbol)
        if sub.stream == "tickers":
            return self._quote_call(sub)
        if sub.stream == "ohlcv":
            return lambda: ex.watch_ohlcv(symbol, self.ohlcv_timeframe)
        if sub.stream == "order_book" and sub.mode == "poll":
            limit = rest_book_limit(self.exchange_id, self.book_levels)
            return lambda: self._poll(sub, "fetch_order_book", self.book_rest_interval_s, limit)
        if sub.stream == "order_book":
            return lambda: ex.watch_order_book(symbol, book_limit(ex, symbol))
        if sub.stream == "liquidations":
            return lambda: ex.watch_liquidations(symbol)
        if sub.interest is not None:
            if sub.interest.mode == "watch":
                return lambda: ex.watch_open_interest(symbol)
            if sub.interest.mode == "ticker":

                async def from_ticker() -> Any:
                    return positioning.open_interest_from_ticker(ex, await ex.watch_ticker(symbol))

                return from_ticker
            return lambda: self._poll(sub, "fetch_open_interest", self.open_interest_interval_s)
        if sub.mode == "mark_price":
            return lambda: ex.watch_mark_price(symbol)
        if sub.mode == "ticker":
            return lambda: ex.watch_ticker(symbol)
        if sub.mode == "funding_rate":
            return lambda: ex.watch_funding_rate(symbol)
        return lambda: self._poll(sub, "fetch_funding_rate", self.funding_poll_interval_s)

    def _quote_call(self, sub: _Subscription) -> Callable[[], Awaitable[Any]]:
        ex, symbol = self.exchange, sub.symbol
        mode, _, depth = sub.mode.partition(":")
        if mode == "bids_asks":

            async def bids_asks() -> Any:
                return (await ex.watch_bids_asks([symbol])).get(symbol)

            return bids_asks
        if mode == "order_book":

            async def quote_from_book() -> Any:
                book = await ex.watch_order_book(symbol, int(depth) if depth else None)
                quote, sub.last_top = book_top(book, symbol, sub.last_top)
                self.counts["tickers:book_top_unchanged"] += quote is None
                return quote

            return quote_from_book
        return lambda: ex.watch_ticker(symbol)

    def channel_name(self, sub: _Subscription) -> str:
        """`<stream>:<ccxt call>[:<ccxt's channel option>]`, e.g. `trades:watch_trades:aggTrade`: the CHANNEL
        event's reason, what a reader of the landed data checks to know which venue channel fed a stream."""
        call = f"watch_{sub.stream}" if sub.stream in ("trades", "ohlcv", "liquidations") else ""
        if sub.interest is not None:
            calls = {"poll": "fetch_open_interest", "ticker": "watch_ticker"}
            call = calls.get(sub.interest.mode, "watch_open_interest")
        elif sub.stream == "order_book":
            limit = book_limit(self.exchange, sub.symbol)
            call = "fetch_order_book" if sub.mode == "poll" else "watch_order_book" + (f":{limit}" if limit else "")
        if sub.stream == "tickers":
            mode, _, depth = sub.mode.partition(":")
            call = {"bids_asks": "watch_bids_asks", "order_book": "watch_order_book"}.get(mode, "watch_ticker")
            call += f":{depth}" if depth else ""
        elif sub.stream == "funding":
            call = {"poll": "fetch_funding_rate", "ticker": "watch_ticker"}.get(sub.mode, f"watch_{sub.mode}")
        options = getattr(self.exchange, "options", None)
        named = call in ("watch_trades", "watch_ticker", "watch_ohlcv", "watch_liquidations")  # a channel option
        option = options.get(normalize.camel_call(call), {}) if named and isinstance(options, Mapping) else {}
        # ccxt's option naming the channel: `name` (binance aggTrade), `method` (bybit allLiquidation)
        name = (option.get("name") or option.get("method")) if isinstance(option, Mapping) else None
        return f"{sub.stream}:{call}" + (f":{name}" if isinstance(name, str) else "")

    async def _poll(self, sub: _Subscription, method: str, interval_s: float, *args: Any) -> Any:
        """A REST call standing in for a stream: one call per `interval_s` of the exchange clock."""
        while sub.next_poll_ms is not None and self.now_ms() < sub.next_poll_ms:
            await self._sleep_exchange((sub.next_poll_ms - self.now_ms()) / 1000.0)
        result = await getattr(self.exchange, method)(sub.symbol, *args)
        # counted from the call's end: a fast clock runs on while the call is answered, and the venue stamps
        # its answer somewhere inside the call, so two answers are never less than interval_s apart
        sub.next_poll_ms = self.now_ms() + int(interval_s * 1000)
        return result

    def _stale_timeout_ms(self, sub: _Subscription) -> int | None:
        stated = getattr(self.exchange, "speed", None)
        if isinstance(stated, int | float) and not isinstance(stated, bool) and stated == 0:
            return None  # an unpaced recording: its clock jumps with the data, silence means nothing
        timeout = self.stale_timeout_s.get(sub.stream)
        if timeout is None or not timeout > 0:
            return None
        if sub.stream == "funding" and sub.mode == "poll":
            timeout = max(timeout, 2 * self.funding_poll_interval_s + 60)  # a poll gap is not a stall
        if sub.interest is not None and sub.interest.mode == "poll":
            timeout = max(timeout, 2 * self.open_interest_interval_s + 60)
        if sub.stream == "order_book" and sub.mode == "poll":
            timeout = max(timeout, 2 * self.book_rest_interval_s + 60)
        return int(timeout * 1000)

    async def _await_watched(self, sub: _Subscription, call: Callable[[], Awaitable[Any]]) -> Any:
        """Await one `watch_*` call in place; the stream's watchdog task (`_watchdog`) cancels it when the
        stream is silent (exchange clock), which this turns into `_Stale`. No task per call: that cost ~13 us a
        call unpaced, ~35 us with `asyncio.wait`, more than ccxt's parse of a frame.

        A call answered from what is already there returns without giving the loop a turn, so a stream whose
        previous call did not wait yields once first, as the task per call did: one busy stream never starves
        the others nor the job's own loop (its hand-overs and stop; yielding every 8 calls instead let the
        capture job at sim speed 4000 overrun its stop bound at load ~10). A call that waited for its message
        (the usual: a live socket, a wire replay) already gave the loop its turn, and the extra one (~2 us a
        call) is saved. The yield comes before the next call, not after the answer: a cancel there loses
        nothing."""
        if not sub.waited:
            await asyncio.sleep(0)
        if sub.stale_ms is None:  # an unpaced recording: no watchdog
            raw, sub.waited = await answered(call())
            return raw
        task = asyncio.current_task()
        if sub.watchdog is None or sub.watchdog.done() or sub.watched is not task:
            if sub.watchdog is not None:
                sub.watchdog.cancel()
            sub.watched = task
            sub.watchdog = asyncio.ensure_future(self._watchdog(sub))
        sub.waiting_since = time.monotonic()
        try:
            raw, sub.waited = await answered(call())
            return raw
        except asyncio.CancelledError:
            if not sub.stale_cancel:
                raise
            if task is not None and task.uncancel() > 0:
                raise  # cancelled by someone else too: that cancel wins
            raise _Stale() from None
        finally:
            sub.waiting_since = 0.0
            sub.stale_cancel = False

    def _silent(self, sub: _Subscription, timeout_ms: int, check_s: float) -> bool:
        """The stream waits in a call (for at least one check period, as the per-call watchdog did) and has
        been silent for the timeout on the exchange clock and for min_stale_wall_s on the monotonic one."""
        wall = time.monotonic()
        return (
            sub.waiting_since > 0
            and wall - sub.waiting_since >= check_s
            and self.now_ms() - sub.last_activity_ms > timeout_ms
            and wall - sub.last_activity_wall >= self.min_stale_wall_s
        )

    async def _watchdog(self, sub: _Subscription) -> None:
        """One long-lived task per watched stream: it sleeps until the stream could first be stale, and cancels
        the call it waits in only when the silence is real. Seen silent, it yields to the loop once and looks
        again: after a busy stretch the call's answer may be in, its task not yet run (a busy loop is not
        silence); the watcher sets the stream's activity right after each call returns."""
        task = sub.watched
        while task is not None and not task.done():
            timeout_ms = self._stale_timeout_ms(sub)
            if timeout_ms is None:
                return
            speed = self.clock_speed()
            check_s = min(max(timeout_ms / 1000.0 / speed / 4, 0.005), 1.0)
            if self._silent(sub, timeout_ms, check_s):
                await asyncio.sleep(0)
                if self._silent(sub, timeout_ms, check_s) and not task.done():
                    sub.stale_cancel = True
                    task.cancel()
                    await asyncio.sleep(0)  # the watcher turns it into _Stale before the next look
                continue
            # until the earliest moment the stream could be stale, at most one check period later
            wall = time.monotonic()
            left_ex_s = (timeout_ms - (self.now_ms() - sub.last_activity_ms)) / 1000.0 / speed
            left_wall_s = self.min_stale_wall_s - (wall - sub.last_activity_wall)
            left_wait_s = check_s - (wall - sub.waiting_since) if sub.waiting_since > 0 else check_s
            await asyncio.sleep(min(max(left_ex_s, left_wall_s, left_wait_s, 0.005), 1.0))  # 1 s: a speed may change

    async def _restart(self, sub: _Subscription) -> None:
        """Drop a silent subscription at the source so the next call subscribes afresh."""
        if not await unwatch(self.exchange, sub.stream, sub.mode, sub.symbol, self.ohlcv_timeframe):
            self.counts["restart:unwatch_failed"] += 1

    def _open_gap(self, sub: _Subscription, reason: str) -> None:
        if sub.gap_start_ms is None:
            sub.gap_start_ms = sub.last_data_ts if sub.last_data_ts is not None else sub.started_ms
        sub.gap_reasons.append(reason)
        if sub.candles is not None and sub.candles.pending is not None:
            sub.candles.uncertain = True  # its last update may have been missed

    # -- watch --------------------------------------------------------------------------------------
    async def watch(self, stream: str, symbol: str) -> AsyncIterator[Batch]:
        """Batches for one (stream, symbol) until cancelled, or until a recorded source is exhausted. A staging
        Feed (`stage_records`) holds tickers and trades back a little: see `drain`.

        The loop below runs once per venue message, so it does the least it can: one exchange clock reading
        and one monotonic one per call; a staged call is appended and, when due, its batch processed; a call
        that brought nothing new (a ticker below the top, the forming candle updated) yields nothing."""
        sub = self._subscription(stream, symbol)
        iid = sub.instrument.id
        call = self._watch_call(sub)
        sub.started_ms = sub.last_activity_ms = self.now_ms()
        sub.last_activity_wall = time.monotonic()
        sub.stale_ms = self._stale_timeout_ms(sub)
        channel = self.channel_name(sub)
        self.counts[f"channel:{channel}"] += 1
        started = sub.started_ms
        yield Batch(
            stream, _empty(stream), event_rows(EventKind.CHANNEL, stream, iid, started, started, reason=channel)
        )
        if stream == "funding":
            await self._bootstrap_interval(sub)
        sub.backoff_s = _INITIAL_BACKOFF_S
        clock, monotonic = self.exchange.milliseconds, time.monotonic
        staged = sub.staged if self.stage_records and stream in STAGED_STREAMS else None
        limit, max_age_s = self.stage_records, self.stage_max_age_s
        candles, validator = sub.candles, self.validator
        try:
            while True:
                try:
                    raw = await self._await_watched(sub, call)
                except Exception as exc:  # noqa: BLE001 - each kind handled in `_failed`; a capture must survive
                    if isinstance(exc, FATAL):
                        # a wrong symbol, method or credential does not heal by retrying. Raised at once, before
                        # any further batch: a consumer that stops between batches still sees it. What was
                        # staged stays staged: `drain` takes it (the watcher does on its timer and at a stop).
                        raise
                    async for batch in self._failed(sub, exc):
                        yield batch
                    if isinstance(exc, (*END_OF_DATA, ccxt.ExchangeClosedByUser)):
                        return
                    continue
                recv = int(clock())
                sub.last_activity_ms = recv
                sub.last_activity_wall = now = monotonic()
                if staged is not None and sub.gap_start_ms is None:  # the call closing a gap goes per call
                    staged.add(stream, raw, recv, now)
                    due = staged.calls and (staged.records >= limit or now - staged.since >= max_age_s)
                    if due and (batch := self._flush_staged(sub)) is not None:
                        yield batch
                    continue
                if (
                    candles is not None
                    and sub.gap_start_ms is None  # the call closing a gap goes the whole way, as above
                    and (forming_ts := candles.forming_update(raw, recv, validator)) is not None
                ):
                    # most candle calls: the forming candle updated, nothing closed or reported (`_absorb`)
                    sub.backoff_s, sub.silent = _INITIAL_BACKOFF_S, False
                    if sub.last_data_ts is None:
                        sub.last_data_ts = forming_ts
                    continue
                records, events, first_ts = self._process(sub, raw, recv)
                gap_events, gap = self._close_gap(sub, first_ts, recv)
                self._absorb(sub, records, first_ts)
                if stream == "funding" and len(records):
                    settled = await self._settled_funding(sub, records, recv)
                    if settled is not None:
                        yield settled  # before the row naming the next settlement (see the module doc)
                if len(records) or len(events) or len(gap_events):
                    yield Batch(stream, records, concat_events([events, gap_events]))
                if gap is not None and self.backfill_gaps and stream in ("trades", "ohlcv"):
                    filled = await self.backfill_gap(stream, symbol, gap[0], gap[1])
                    if len(filled.records) or len(filled.events):
                        yield filled
        finally:
            if sub.watchdog is not None:  # the stream's watchdog ends with its watch
                sub.watchdog.cancel()
                sub.watchdog = sub.watched = None

    async def _failed(self, sub: _Subscription, exc: Exception) -> AsyncIterator[Batch]:
        """The batches after a failed call (not a FATAL one: `watch` raises that). What the calls before the
        failure staged goes first, in the batch that reports it: a consumer that stops between batches (the
        capture at a stop) gets both or neither. The end of a recording: the forming candle, an open gap kept
        visible; a silence: its STALE event (one per silent stretch), the restart, a book's repair; the exchange
        closed: the staged batch; a network error or any source fault: the RECONNECT event, a book's repair at
        the gap's first failure, then the back-off."""
        stream = sub.stream
        staged = self._flush_staged(sub)
        if isinstance(exc, END_OF_DATA):
            final = self._flush_closed_pending(sub)  # ohlcv, which is never staged
            if final is not None:
                yield final
            now = self.now_ms()
            unclosed, _ = self._close_gap(sub, now, now)  # an open gap stays visible at the end
            if staged is not None or len(unclosed):
                yield _joined(stream, staged, unclosed)
            return
        if isinstance(exc, _Stale):
            stale = self._stale(sub)
            if staged is not None or stale is not None:  # before the restart, which a stop can cancel
                yield _joined(stream, staged, stale)
            await self._restart(sub)
            sub.last_activity_ms, sub.last_activity_wall = self.now_ms(), time.monotonic()
            if stale is not None and (repaired := await self._repair_book(sub)) is not None:
                yield repaired
            return
        if isinstance(exc, ccxt.ExchangeClosedByUser):
            if staged is not None:
                yield staged
            return
        yield _joined(stream, staged, self._failure(sub, exc))  # network errors, any source fault
        if len(sub.gap_reasons) == 1 and (repaired := await self._repair_book(sub)) is not None:
            yield repaired  # the gap's first failure: the book is known again at once
        await self._sleep_exchange(sub.backoff_s)
        sub.backoff_s = min(sub.backoff_s * 2, self.max_backoff_s)
        sub.last_activity_ms, sub.last_activity_wall = self.now_ms(), time.monotonic()

    # -- staging: the Feed's own (`staging.Staged` per subscription holds the calls) ----------------------
    def _absorb(self, sub: _Subscription, records: np.ndarray, first_ts: int | None) -> None:
        """A processed call's mark on its stream: data flowed (back-off and silence reset), the last data time."""
        if first_ts is not None:
            sub.backoff_s = _INITIAL_BACKOFF_S
            sub.silent = False
        if len(records):
            sub.last_data_ts = int(records["ts_ms"].max())
            self.counts[f"records:{sub.stream}"] += len(records)
        elif first_ts is not None and sub.last_data_ts is None:
            sub.last_data_ts = first_ts

    def _flush_staged(self, sub: _Subscription) -> Batch | None:
        """A subscription's staged calls processed: a batch at a time (`staging.process_staged`), or call by
        call when the batch pass cannot vouch for them; None when nothing was staged or nothing came of it."""
        if not sub.staged.calls:
            return None
        calls = sub.staged.take()
        done = staging.process_staged(sub.stream, calls, sub.instrument, self.validator)
        if done is not None:
            records, events, first_ts = done
            self._absorb(sub, records, first_ts)
        else:  # call by call (a ticker's or trades' processing reads none of the state `_absorb` moves)
            processed = [self._process_one(sub, raw, recv) for raw, recv in calls]
            for records, _, first_ts in processed:
                self._absorb(sub, records, first_ts)
            records, events = np.concatenate([p[0] for p in processed]), concat_events(p[1] for p in processed)
        return Batch(sub.stream, records, events) if len(records) or len(events) else None

    def _process_one(self, sub: _Subscription, raw: Any, recv: int) -> tuple[np.ndarray, np.ndarray, int | None]:
        """One staged call by the per-call path; a call it cannot process is quarantined (`error:<type>`)
        instead of losing the calls staged with it."""
        try:
            return self._process(sub, raw, recv)
        except Exception as exc:  # noqa: BLE001 - one bad message must not cost the batch it was staged in
            self.counts[f"errors:{type(exc).__name__}"] += 1
            iid = sub.instrument.id
            reason = f"error:{type(exc).__name__}"
            events = event_rows(EventKind.QUARANTINED, sub.stream, iid, recv, recv, reason=reason, count=1)
            return _empty(sub.stream), events, None

    def drain(self) -> list[Batch]:
        """What every subscription has staged, processed now. A staging Feed's consumer calls it on a timer
        (a quiet stream's last calls never wait for its next message) and when it stops watching, or a watch
        ended with an error (nothing staged is left behind)."""
        return [batch for sub in self._subs.values() if (batch := self._flush_staged(sub)) is not None]

    def _stale(self, sub: _Subscription) -> np.ndarray | None:
        """A silent stream seen by its watchdog: counted, a gap opened; the STALE event when the silence is new."""
        now = self.now_ms()
        self.counts["stale"] += 1
        silent_since = sub.last_activity_ms
        self._open_gap(sub, "stale")
        if sub.silent:
            return None  # still the same silence after a restart
        sub.silent = True
        return event_rows(EventKind.STALE, sub.stream, sub.instrument.id, now, now, start_ms=silent_since,
                          end_ms=now, reason="stale:restart")  # fmt: skip

    def _failure(self, sub: _Subscription, exc: Exception) -> np.ndarray:
        """A failed call (network error, broken book sequence, any source fault): counted, a gap opened, and
        its RECONNECT event."""
        now = self.now_ms()
        self.counts["reconnects"] += 1
        sequence = isinstance(exc, SEQUENCE_ERRORS)
        self._open_gap(sub, "sequence" if sequence else "reconnect")
        retryable = isinstance(exc, RETRYABLE)
        if not retryable and not sequence:
            self.counts[f"errors:{type(exc).__name__}"] += 1
        reason = f"{'sequence' if sequence else 'reconnect' if retryable else 'error'}:{type(exc).__name__}"
        return event_rows(EventKind.RECONNECT, sub.stream, sub.instrument.id, now, now, start_ms=now, end_ms=now,
                          reason=reason)  # fmt: skip

    async def _repair_book(self, sub: _Subscription) -> Batch | None:
        """A streamed book's gap (sequence break, reconnect, stale) repaired at once: one `fetch_order_book`
        snapshot where the venue has it, kept (`from_rest` = 1) if newer than the stream's, closing the GAP."""
        if sub.books is None or sub.mode == "poll" or not self._has("fetchOrderBook"):
            return None
        limit = rest_book_limit(self.exchange_id, self.book_levels)
        try:  # one attempt: during an outage the stream's own back-off, not REST retries, paces the recovery
            raw = await self._rest("fetch_order_book", sub.symbol, limit, retries=0)
        except (*RETRYABLE, *END_OF_DATA, ccxt.ExchangeError):
            self.counts["order_book:repair_failed"] += 1
            return None
        recv = self.now_ms()
        records, events, first_ts = sub.books.take(raw, recv, self.validator, self.counts, rest=True)
        gap_events, _ = self._close_gap(sub, first_ts if len(records) else None, recv)
        if len(records):
            sub.last_data_ts = int(records["ts_ms"].max())
        return Batch(sub.stream, records, concat_events([events, gap_events]))

    def _close_gap(
        self, sub: _Subscription, first_ts: int | None, now: int
    ) -> tuple[np.ndarray, tuple[int, int] | None]:
        if sub.gap_start_ms is None or first_ts is None:
            return _empty("capture_events"), None
        start = sub.gap_start_ms
        end = max(first_ts, start)
        reasons = sorted(set(sub.gap_reasons))
        event = event_rows(
            EventKind.GAP,
            sub.stream,
            sub.instrument.id,
            now,
            now,
            count=len(sub.gap_reasons),
            start_ms=start,
            end_ms=end,
            reason="+".join(reasons),
        )
        sub.gap_start_ms = None
        sub.gap_reasons = []
        self.counts["gaps"] += 1
        return event, (start, end)

    # -- processing ---------------------------------------------------------------------------------
    def _process(self, sub: _Subscription, raw: Any, recv: int) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Raw watch result -> (accepted records, events, first event time seen or None)."""
        stream, instrument = sub.stream, sub.instrument
        if stream == "trades":
            items = list(raw) if isinstance(raw, Sequence) else [raw]
            items, screened = self.validator.screen(stream, items, instrument.id, recv)
            records = normalize.trades_to_records(items, instrument, recv)
        elif stream == "tickers":
            if raw is None:  # a book update below the top, or another symbol's quote: nothing new
                return _empty("tickers"), _empty("capture_events"), None
            items, screened = self.validator.screen(stream, [raw], instrument.id, recv)
            records = normalize.ticker_to_record(items[0], instrument, recv) if items else _empty("tickers")
        elif sub.candles is not None:
            backfill_possible = self.backfill_gaps and self._has("fetchOHLCV")
            return sub.candles.take(raw, instrument, recv, self.validator, backfill_possible)
        elif stream == "order_book" and sub.books is not None:
            return sub.books.take(raw, recv, self.validator, self.counts, rest=sub.mode == "poll")
        elif sub.interest is not None:
            return sub.interest.take(raw, instrument, recv, self.validator, self.counts)
        elif stream == "liquidations":
            side_means = positioning.liquidation_side_meaning(self.exchange)
            return positioning.take_liquidations(raw, instrument, recv, self.validator, side_means)
        else:
            records, screened = self._funding_records(sub, raw, recv)
        valid_ts = records["ts_ms"][records["ts_ms"] > 0]
        first = int(valid_ts.min()) if len(valid_ts) else None
        # Validated before thinning: a repeated or older snapshot is a duplicate or out of order, and counted.
        accepted, checked = self.validator.check(stream, records, recv)
        if stream == "funding" and len(accepted) and self._thin_funding(sub, accepted[0], recv):
            accepted = accepted[:0]
        return accepted, concat_events([screened, checked]), first

    async def _settled_funding(self, sub: _Subscription, records: np.ndarray, recv: int) -> Batch | None:
        """Settled rows for the settlements the stream moved past, fetched from the venue's history (see the
        module doc); None while nothing is due or published."""
        predicted = records["funding_ts_ms"][records["is_settled"] == 0]
        if not len(predicted):
            return None
        named = int(predicted.max())
        if 0 < sub.named_settlement_ms < named:
            sub.settled_due.add(sub.named_settlement_ms)
        sub.named_settlement_ms = max(sub.named_settlement_ms, named)
        if not sub.settled_due or recv < sub.settled_retry_ms:
            return None
        if not self._has("fetchFundingRateHistory"):
            self.counts["funding:settled_unavailable"] += len(sub.settled_due)
            sub.settled_due.clear()
            return None
        due = np.fromiter(sorted(sub.settled_due), np.int64)
        found, events = [], []
        try:
            async for batch in self.history(
                "funding", sub.symbol, int(due[0]) - SETTLED_MATCH_MS, int(due[-1]) + SETTLED_MATCH_MS
            ):
                found.append(batch.records)
                events.append(batch.events)
        except ccxt.NotSupported:  # e.g. a wire replay that recorded no such response: asking again cannot help
            self.counts["funding:settled_unavailable"] += len(sub.settled_due)
            sub.settled_due.clear()
            return None
        except Exception as exc:  # noqa: BLE001 - the stream goes on; its predictions stand for this settlement
            self.counts[f"funding:settled_failed:{type(exc).__name__}"] += 1
            found = []
        fetched = np.concatenate(found) if found else _empty("funding")
        near = np.abs(fetched["funding_ts_ms"][:, None] - due[None, :]) <= SETTLED_MATCH_MS
        settled = fetched[near.any(axis=1)]
        matched = due[near.any(axis=0)]
        sub.settled_due.difference_update(int(t) for t in matched)
        expired = {t for t in sub.settled_due if recv > t + SETTLED_WAIT_MS}
        self.counts["funding:settled"] += len(settled)
        self.counts["funding:settled_missing"] += len(expired)
        sub.settled_due -= expired
        sub.settled_retry_ms = recv + int(self.funding_poll_interval_s * 1000)
        if not len(settled) and not any(len(e) for e in events):
            return None
        return Batch("funding", settled, concat_events(events))

    @property
    def _ws_candles_count_contracts(self) -> bool:
        """binance's websocket klines of COIN-M count contracts (ccxt passes `v` on); its REST ones and every
        other venue's give base units. Only a real ccxt.pro class (live, wire) gets the venue's frames."""
        facts = venue_facts(self.exchange_id)
        return facts is not None and facts.ws_candle_volume_in_contracts and isinstance(self.exchange, AsyncExchange)

    def _flush_closed_pending(self, sub: _Subscription) -> Batch | None:
        """At the end of a recording: the forming candle, if its period is over on the exchange clock."""
        if (
            sub.candles is None
            or (done := sub.candles.flush_closed(sub.instrument, self.now_ms(), self.validator)) is None
        ):
            return None
        return Batch("ohlcv", *done) if len(done[0]) or len(done[1]) else None

    async def _bootstrap_interval(self, sub: _Subscription) -> None:
        """Learn the funding interval once at start when nothing states it yet (hyperliquid's tickers don't):
        ask the venue over REST (recorded by the raw recorder, answered from the recording in a wire replay),
        recorded in the registry as `learned`; the capture job saves what its watchers learned. Failing
        that, the interval rule falls back on the venue's documented schedule when a value arrives."""
        ts = self.now_ms()
        book = self._book(sub.symbol)
        if book.at(ts) is not None or math.isfinite(intervals.market_interval_h(self._market(sub.symbol))):
            return
        for method, flag in (
            ("fetch_funding_interval", "fetchFundingInterval"),
            ("fetch_funding_rate", "fetchFundingRate"),
        ):
            if not self._has(flag) or getattr(self.exchange, method, None) is None:
                continue
            try:
                structure = await getattr(self.exchange, method)(sub.symbol)
            except Exception:  # noqa: BLE001 - offline replays and venues without the endpoint: learn later
                self.counts["funding:interval_lookup_failed"] += 1
                continue
            interval = normalize.funding_interval_h(structure if isinstance(structure, Mapping) else None)
            if math.isfinite(interval):
                book.observe(ts, interval, "learned")
                self.counts["funding:interval_learned"] += 1
                return

    def _market(self, symbol: str) -> Mapping[str, Any] | None:
        markets = getattr(self.exchange, "markets", None)
        return markets.get(symbol) if isinstance(markets, Mapping) else None

    def _has(self, flag: str) -> bool:
        has = getattr(self.exchange, "has", None) or {}
        return bool(has.get(flag))

    def _book(self, symbol: str) -> intervals.IntervalBook:
        return intervals.IntervalBook(self.registry, self.exchange_id, symbol)

    def _funding_records(self, sub: _Subscription, raw: Any, recv: int) -> tuple[np.ndarray, np.ndarray]:
        """One funding structure -> its record, read once and given the interval `intervals` decides."""
        instrument = sub.instrument
        problem = self.validator.funding_problem(raw, sub.mode)
        if problem is not None:
            return _empty("funding"), self.validator.quarantine("funding", instrument.id, recv, problem)
        snapshot = normalize.funding_snapshot(raw, sub.mode)
        if snapshot is None:
            return _empty("funding"), self.validator.quarantine("funding", instrument.id, recv, "missing:funding_rate")
        facts = venue_facts(self.exchange_id)
        decided = intervals.streamed_interval(
            snapshot,
            self._book(sub.symbol),
            self._market(sub.symbol),
            recv_ts_ms=recv,
            previous_settlement_ms=sub.last_settlement_ms,
            in_gap=sub.gap_start_ms is not None,
            schedule_h=(facts.funding_schedule_h if facts else None) or math.nan,
        )
        sub.last_settlement_ms = decided.settlement_ms
        if decided.inferred:
            self.counts["funding:interval_inferred"] += 1
        return snapshot.to_record(instrument, recv, decided.interval_h), _empty("capture_events")

    def _thin_funding(self, sub: _Subscription, record: np.ndarray, recv: int) -> bool:
        """True when this snapshot repeats the last emitted one within the poll interval (then it is dropped)."""
        key = (
            float(record["funding_ts_ms"]),
            float(record["funding_rate"]),
            float(record["next_funding_rate"]),
            float(record["interval_h"]),
        )
        key = tuple(-1.0 if math.isnan(v) else v for v in key)
        period_ms = int(self.funding_poll_interval_s * 1000)
        if key == sub.last_funding_key and recv - sub.last_funding_emit_ms < period_ms:
            self.counts["funding:unchanged"] += 1
            return True
        sub.last_funding_key = key
        sub.last_funding_emit_ms = recv
        return False
