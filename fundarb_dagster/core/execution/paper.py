"""A paper venue: ccxt's private API over any market-data source (replay, wire replay, live), sending nothing.

`PaperExchange(source, registry, balances)` wraps an exchange object of any source kind. Its market data comes
through the one consumer of every source, `sources.feed.Feed` (the venue's own quote and funding channels,
validated), into a `PaperMarket`, the `MarketDriver` that `private.PrivateApi` (the same private side as the
simulator's) trades on:

- the book is the latest captured order book where the source carries books (`has['watchOrderBook']`: the
  simulator, a wire replay of recorded depth channels, live): the `order_book` stream's levels (the capture's
  `book_levels` and `book_interval_s`), walked level by level as the simulator walks its own; an order larger
  than the captured depth fills the depth and the rest expires (a market order is IOC), and liquidity taken at
  one book is gone for the next order at that book. A book more than `BOOK_LAG_MS` older than the latest quote
  is not the market any more: then, and where the source carries no books, the book is the latest quote, bid
  and ask without a size limit (an order fills whole at the quote: crossing the spread is charged, walking
  deeper levels is not);
- a resting limit order fills at the first quote that crosses its price;
- funding is paid at each settlement the funding stream names (`funding_ts_ms`) on the position held at it: the
  rate is the venue's settled rate where the stream carries it (the Feed fetches it from the venue's history
  as the stream moves past the settlement, `is_settled` rows), else the stream's last value for that
  settlement (the venue's converged prediction; a capture that missed the interval's last minutes is off by
  what the rate moved since), on the reference
  price the venue pays on (`VenueFacts.funding_price`: mark, or the oracle/index on hyperliquid), the last
  streamed one at or before the settlement; paid once the stream has moved past it (or, naming no later
  settlement, streamed `SETTLE_GRACE_MS` past it), so a little late, on the account's position history. Both
  are the stream's own time, never the account's clock: a funding stream that lags the clock (a busy machine
  under a fast replay) pays late, never on a prediction it has not delivered yet; the end of a run (`end`)
  settles what is left on what was streamed;
- markets are the source's; where it states no lot or tick (a landing replay), a fine assumed step
  (`with_precision`);
- liquidations on the streamed marks, with the venue's modelled leverage tiers (`tiers.TIER_SCHEDULES`).

Public calls the trader prices with (`fetch_ticker`, `fetch_funding_rate`, `fetch_order_book`) answer from
the same streamed state, so a decision sees the quote its orders fill against. The clock is the source's
(`milliseconds()`, wall time live, the replay's clock on a replay; `speed` its pace); a replay must be paced
(`replay.speed > 0`): the trader trades in its time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import ccxt
import numpy as np

from ..config import FundarbConfig
from ..instruments import InstrumentRegistry
from ..sources.feed import SETTLED_MATCH_MS, Feed
from ..venues import maintenance_margin_rate, venue_facts
from . import tiers as tiering
from .private import PrivateApi, bind_private
from .protocol import FILL, LIQUIDATION, PRIVATE_HAS, AccountEvents, hand_over
from .structures import iso

SETTLE_GRACE_MS: Final = 600_000  # a settlement the stream never moves past is final when it streams this far past
KEEP_MS: Final = 3_600_000  # streamed history kept behind the account's time (resting orders, marks, settlements)
FIRST_DATA_S: Final = 60.0  # how long (wall) a public call waits for the first streamed value of a market
ASSUMED_STEP: Final = 1e-8  # amount/price step of a market whose source states none
GENERIC_MAX_LEVERAGE: Final = 20.0  # a venue without modelled tiers: one tier at its documented maintenance rate
BOOK_LAG_MS: Final = 60_000  # a captured book this much older than the latest quote is not filled against


@dataclass
class _Series:
    """A market's streamed values in time order (appended as they arrive, pruned behind the account)."""

    times: list[int] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, t: int, row: tuple[Any, ...]) -> None:
        if self.times and t < self.times[-1]:
            return  # the Feed validates order; a late value never rewrites the past
        self.times.append(t)
        self.rows.append(row)

    def at(self, t: int) -> tuple[Any, ...] | None:
        """The latest value at or before t."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.rows[i] if i >= 0 else None

    def between(self, lo: int, hi: int) -> tuple[list[int], list[tuple[Any, ...]]]:
        """Values with lo < time <= hi."""
        a, b = bisect.bisect_right(self.times, lo), bisect.bisect_right(self.times, hi)
        return self.times[a:b], self.rows[a:b]

    def prune(self, before: int) -> None:
        """Drop values older than `before`, keeping the last one at or before it (the state then)."""
        i = bisect.bisect_right(self.times, before) - 1
        if i > 0:
            del self.times[:i]
            del self.rows[:i]


def with_precision(market: Mapping[str, Any]) -> dict[str, Any]:
    """The market as the source gives it; where the source states no amount or price step (a landing replay
    keeps instruments, not trading rules), an assumed fine step (`ASSUMED_STEP`, one contract for contracts with
    a size other than one), said in `info['paper_assumed_precision']`."""
    out = dict(market)
    precision = dict(out.get("precision") or {})
    if precision.get("amount") and precision.get("price"):
        return out
    sized = bool(out.get("contract")) and float(out.get("contractSize") or 1.0) != 1.0
    precision.setdefault("amount", None)
    precision.setdefault("price", None)
    precision["amount"] = precision["amount"] or (1.0 if sized else ASSUMED_STEP)
    precision["price"] = precision["price"] or ASSUMED_STEP
    out["precision"] = precision
    out["info"] = {**dict(out.get("info") or {}), "paper_assumed_precision": True}
    return out


# quote rows: (bid, ask, bid amount, ask amount) in the venue's amount unit; funding rows:
# (settlement ms, rate, interval h, mark, index)
BID, ASK, BID_AMOUNT, ASK_AMOUNT = range(4)
SETTLEMENT, RATE, INTERVAL, MARK, INDEX = range(5)


class PaperMarket:
    """The `MarketDriver` of a paper venue (see the module doc)."""

    def __init__(self, source: Any, oracle: bool) -> None:
        self.source = source
        self.oracle = oracle
        self.quotes: dict[str, _Series] = {}
        self.funding: dict[str, _Series] = {}
        self.settled: dict[str, dict[int, float]] = {}  # symbol -> settlement -> the venue's settled rate
        self.books: dict[str, _Series] = {}  # rows: (bids, asks) as ccxt's [[price, amount]], venue amount units
        self.arrived = asyncio.Event()
        self.paid_until: dict[str, int] = {}  # symbol -> the last settlement handed over
        self.ended_at: int | None = None  # the run ended here: settlements up to it are final on what streamed
        self.max_quote_age_ms = 0  # the oldest quote an order met (a stream that lags its clock fills stale)
        self.met: dict[str, int] = {}  # symbol -> the time of the book (or quote) last asked for: what orders met

    # -- what the feed tells it ---------------------------------------------------------------------------
    def add_quotes(self, symbol: str, records: np.ndarray) -> None:
        series = self.quotes.setdefault(symbol, _Series())
        for r in records:
            bid_amount = r["bid_contracts"] if math.isfinite(r["bid_contracts"]) else r["bid_size"]
            ask_amount = r["ask_contracts"] if math.isfinite(r["ask_contracts"]) else r["ask_size"]
            series.add(int(r["ts_ms"]), (float(r["bid"]), float(r["ask"]), float(bid_amount), float(ask_amount)))
        self.arrived.set()

    def add_books(self, symbol: str, records: np.ndarray, contract_size: float = 1.0) -> None:
        """`order_book` records (base units, NaN past the depth) as ccxt books in the venue's amount unit."""
        series = self.books.setdefault(symbol, _Series())
        for r in records:
            sides = []
            for prices, sizes in ((r["bid_price"], r["bid_size"]), (r["ask_price"], r["ask_size"])):
                keep = np.isfinite(prices) & np.isfinite(sizes) & (sizes > 0)
                sides.append(
                    [[float(p), float(a) / contract_size] for p, a in zip(prices[keep], sizes[keep], strict=True)]
                )
            if sides[0] and sides[1]:
                series.add(int(r["ts_ms"]), (sides[0], sides[1]))
        self.arrived.set()

    def add_funding(self, symbol: str, records: np.ndarray) -> None:
        series = self.funding.setdefault(symbol, _Series())
        settled = self.settled.setdefault(symbol, {})
        for r in records:
            if r["is_settled"]:
                settled[int(r["funding_ts_ms"])] = float(r["funding_rate"])  # the venue's final word
                continue
            row = (
                float(r["funding_ts_ms"]),
                float(r["funding_rate"]),
                float(r["interval_h"]),
                float(r["mark_price"]),
                float(r["index_price"]),
            )
            series.add(int(r["ts_ms"]), row)
        self.arrived.set()

    # -- MarketDriver -------------------------------------------------------------------------------------
    def milliseconds(self) -> int:
        return int(self.source.milliseconds())

    @property
    def speed(self) -> float:
        speed = getattr(self.source, "speed", 1.0)
        return float(speed) if isinstance(speed, int | float) and speed > 0 else 1.0

    async def wait_until(self, t: int) -> None:
        await asyncio.sleep(max(0.0, (t - self.milliseconds()) / self.speed / 1000.0))

    def order_book(self, symbol: str, t: int) -> dict[str, Any] | None:
        """The captured book in force at t, else the quote in force at t as a one-level book with its amounts
        unbounded (see the module doc)."""
        quotes, books = self.quotes.get(symbol), self.books.get(symbol)
        i = bisect.bisect_right(quotes.times, t) - 1 if quotes else -1
        j = bisect.bisect_right(books.times, t) - 1 if books else -1
        if books is not None and j >= 0 and (i < 0 or books.times[j] >= quotes.times[i] - BOOK_LAG_MS):
            stamp = books.times[j]
            bids, asks = books.rows[j]
            self.max_quote_age_ms = max(self.max_quote_age_ms, t - stamp)
            self.met[symbol] = stamp
            return {
                "bids": [list(b) for b in bids],
                "asks": [list(a) for a in asks],
                "timestamp": stamp,
                "nonce": stamp,
            }
        if quotes is None or i < 0:
            return None
        q = quotes.rows[i]
        stamp = quotes.times[i]
        self.max_quote_age_ms = max(self.max_quote_age_ms, t - stamp)  # how far the stream lagged an order
        self.met[symbol] = stamp
        return {"bids": [[q[BID], math.inf]], "asks": [[q[ASK], math.inf]], "timestamp": stamp, "nonce": stamp}

    def mark(self, symbol: str, t: int) -> float | None:
        funding = self.funding.get(symbol)
        row = funding.at(t) if funding else None
        if row is not None and math.isfinite(row[MARK]):
            return row[MARK]
        quotes = self.quotes.get(symbol)
        q = quotes.at(t) if quotes else None
        return (q[BID] + q[ASK]) / 2 if q is not None else None

    def reference(self, symbol: str, t: int) -> float | None:
        """The price a settlement at t is paid on: the oracle (index) where the venue says so, else the mark."""
        funding = self.funding.get(symbol)
        row = funding.at(t) if funding else None
        if self.oracle and row is not None and math.isfinite(row[INDEX]):
            return row[INDEX]
        return self.mark(symbol, t)

    def funding_at(self, symbol: str, t: int) -> tuple[float, float]:
        rate = self._final_rate(symbol, t)
        price = self.reference(symbol, t)
        return (rate if rate is not None else 0.0), (price if price is not None else 0.0)

    def _final_rate(self, symbol: str, settlement: int) -> float | None:
        """The stream's last rate for a settlement once it is final: the stream has moved on to a later
        settlement, or has streamed `SETTLE_GRACE_MS` past it (the last prediction stands). None: not yet.
        The stream's time, not the account's: a lagging stream has not delivered its last prediction yet."""
        series = self.funding.get(symbol)
        if series is None or not series.times:
            return None
        moved_on = series.rows[-1][SETTLEMENT] > settlement
        ended = self.ended_at is not None and settlement <= self.ended_at
        if not moved_on and not ended and series.times[-1] < settlement + SETTLE_GRACE_MS:
            return None
        settled = self.settled.get(symbol, {})
        near = [t for t in settled if abs(t - settlement) <= SETTLED_MATCH_MS]
        if near:
            return settled[min(near, key=lambda t: abs(t - settlement))]
        for row in reversed(series.rows):
            if int(row[SETTLEMENT]) == settlement:
                return row[RATE]
        return None

    def next_events(self, account: AccountEvents, lo: int, hi: int) -> tuple[int, list[tuple[int, str]]] | None:
        """Resting orders the quotes reached and liquidations on the marks (funding: `_pay_funding`)."""
        due: dict[tuple[int, str], int] = {}
        for symbol, side, price in account.resting():
            times, rows = self.quotes.get(symbol, _Series()).between(lo, hi)
            for t, q in zip(times, rows, strict=True):
                if (side == "buy" and q[ASK] <= price) or (side == "sell" and q[BID] >= price):
                    due[(FILL, symbol)] = min(t, due.get((FILL, symbol), t))
                    break
        for symbol in account.open_symbols():
            times, marks = self._marks(symbol, lo, hi)
            i = account.first_liquidation(symbol, np.asarray(marks, dtype=float))
            if i is not None:
                due[(LIQUIDATION, symbol)] = times[i]
        if not due:
            return None
        first = min(due.values())
        return first, sorted(key for key, t in due.items() if t == first)

    def _pay_funding(self, account: AccountEvents, upto: int) -> None:
        """Every settlement the stream named, in order, once final: paid on the position held at it (a stream's
        settlement is known only after it happened, so it is paid late, on the account's history)."""
        for symbol, series in self.funding.items():
            named = sorted({int(r[SETTLEMENT]) for r in series.rows})
            for settlement in named:
                if settlement <= self.paid_until.get(symbol, -1) or settlement > upto:
                    continue
                rate = self._final_rate(symbol, settlement)
                if rate is None:
                    break
                price = self.reference(symbol, settlement)
                if price is not None:
                    account.on_funding(symbol, settlement, rate, price)
                self.paid_until[symbol] = settlement

    def _marks(self, symbol: str, lo: int, hi: int) -> tuple[list[int], list[float]]:
        funding = self.funding.get(symbol)
        if funding is not None and funding.times:
            times, rows = funding.between(lo, hi)
            return times, [r[MARK] for r in rows]
        times, rows = self.quotes.get(symbol, _Series()).between(lo, hi)
        return times, [(q[BID] + q[ASK]) / 2 for q in rows]

    def advance(self, account: AccountEvents, upto: int) -> None:
        hand_over(self, account, upto)
        self._pay_funding(account, upto)
        for series in (*self.quotes.values(), *self.funding.values(), *self.books.values()):
            series.prune(account.time - KEEP_MS)

    def next_event(self, account: AccountEvents, after: int) -> int | None:
        return None  # a stream's future is unknown: the private streams re-check on every arrival

    def caught_up(self, t: int) -> bool:
        """Every funding stream has streamed past t: each settlement at or before t is final (payable)."""
        return all(series.times and series.times[-1] > t for series in self.funding.values())


class PaperExchange:
    """A paper venue over a market-data source (see the module doc): the source's markets and clock, the
    streamed quotes and funding, ccxt's private API on a paper account. Nothing is sent to an exchange."""

    is_paper = True

    def __init__(
        self,
        source: Any,
        registry: InstrumentRegistry,
        symbols: Sequence[str],
        balances: Mapping[str, float],
        *,
        feed_options: Mapping[str, Any] | None = None,
        depth: bool = True,
    ) -> None:
        self.source = source
        self.depth = depth  # fill against captured books where the source carries them
        self.id = str(source.id)
        self.registry = registry
        self.symbols = tuple(symbols)
        self.markets: dict[str, dict[str, Any]] = {}
        facts = venue_facts(self.id)
        self.market = PaperMarket(source, oracle=facts is not None and facts.funding_price == "oracle")
        self.feed = Feed(source, registry, **dict(feed_options or {}))
        self.private = PrivateApi(
            self.id, lambda: self.markets, self.load_markets, self.market, self.leverage_tiers, balances
        )
        bind_private(self, self.private)
        self.has: dict[str, Any] = {
            "fetchTicker": True,
            "fetchOrderBook": True,
            "fetchFundingRate": True,
            **PRIVATE_HAS,
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._funding_watches: list[asyncio.Task[None]] = []  # of `_tasks`: what `end` waits for
        self._tiers: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[str] = []

    # -- clock --------------------------------------------------------------------------------------------
    def milliseconds(self) -> int:
        return self.market.milliseconds()

    async def end(self, t: int, timeout_s: float) -> bool:
        """The end of a paper run at t (its account ends with it): wait (wall, bounded) for the funding streams
        to stream past t, as a lagging stream pays late; then every settlement up to t is final on what was
        streamed (a source that ended never passes t: no wait once all of them ended). True when the streams
        caught up."""
        deadline = time.monotonic() + timeout_s
        while not self.market.caught_up(t) and not self._funding_ended() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.market.ended_at = t
        return self.market.caught_up(t)

    def _funding_ended(self) -> bool:
        """Every funding stream of the venue has ended (a replay's source ran out): none will pass the clock, so
        waiting for them is time lost (a live source's streams do not end)."""
        return bool(self._funding_watches) and all(task.done() for task in self._funding_watches)

    @property
    def speed(self) -> float:
        return self.market.speed

    # -- markets and streams --------------------------------------------------------------------------------
    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        if self.markets and not reload:
            return self.markets
        markets = await self.source.load_markets()
        missing = [s for s in self.symbols if s not in markets]
        if missing:
            raise ccxt.BadSymbol(f"paper {self.id}: {missing} not listed by the source")
        self.registry.add_markets(self.id, markets, list(self.symbols))
        self.markets = {s: with_precision(markets[s]) for s in self.symbols}
        if not self._tasks:
            for symbol in self.symbols:
                self._tasks.append(asyncio.create_task(self._watch("tickers", symbol)))
                if self.markets[symbol].get("swap"):
                    self._funding_watches.append(asyncio.create_task(self._watch("funding", symbol)))
                    self._tasks.append(self._funding_watches[-1])
                if self.carries_books(symbol):
                    self._tasks.append(asyncio.create_task(self._watch("order_book", symbol)))
        return self.markets

    def carries_books(self, symbol: str) -> bool:
        """The source streams `symbol`'s order book (ccxt's `has['watchOrderBook']`; a wire replay: a book channel
        was recorded for it)."""
        if not self.depth or not (getattr(self.source, "has", None) or {}).get("watchOrderBook"):
            return False
        books_via = getattr(self.source, "books_via", None)
        return books_via is None or bool(books_via(symbol))

    async def _watch(self, stream: str, symbol: str) -> None:
        if stream == "order_book":
            size = float(self.markets[symbol].get("contractSize") or 1.0)
            add = lambda s, records: self.market.add_books(s, records, size)  # noqa: E731
        else:
            add = self.market.add_quotes if stream == "tickers" else self.market.add_funding
        try:
            async for batch in self.feed.watch(stream, symbol):
                if len(batch.records):
                    add(symbol, batch.records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - said by the next public call, the venue keeps serving the rest
            self.errors.append(f"{stream} {symbol}: {type(exc).__name__}: {exc}")

    async def _first(self, series: dict[str, _Series], symbol: str, what: str) -> tuple[int, tuple[float, ...]]:
        await self.load_markets()
        if symbol not in self.markets:
            raise ccxt.BadSymbol(f"paper {self.id}: {symbol!r} is not traded here")
        deadline = asyncio.get_running_loop().time() + FIRST_DATA_S
        while not (symbol in series and series[symbol].times):
            if self.errors:
                raise ccxt.ExchangeNotAvailable(f"paper {self.id}: the source failed: {self.errors[-1]}")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise ccxt.RequestTimeout(f"paper {self.id}: no {what} streamed for {symbol} yet")
            self.market.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.market.arrived.wait(), timeout=min(left, 1.0))
        s = series[symbol]
        i = bisect.bisect_right(s.times, self.milliseconds()) - 1
        i = max(i, 0)
        return s.times[i], s.rows[i]

    # -- public calls, from the streamed state -----------------------------------------------------------
    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        t, q = await self._first(self.market.quotes, symbol, "quote")
        return {
            "symbol": symbol,
            "timestamp": t,
            "datetime": iso(t),
            "bid": q[BID],
            "ask": q[ASK],
            "bidVolume": q[BID_AMOUNT],
            "askVolume": q[ASK_AMOUNT],
            "last": None,
            "info": {},
        }

    async def fetch_order_book(
        self, symbol: str, limit: int | None = None, params: dict | None = None
    ) -> dict[str, Any]:
        t, q = await self._first(self.market.quotes, symbol, "quote")
        return {
            "symbol": symbol,
            "bids": [[q[BID], q[BID_AMOUNT]]],
            "asks": [[q[ASK], q[ASK_AMOUNT]]],
            "timestamp": t,
            "datetime": iso(t),
            "nonce": t,
        }

    async def fetch_funding_rate(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        t, f = await self._first(self.market.funding, symbol, "funding")
        interval = f[INTERVAL]
        return {
            "symbol": symbol,
            "timestamp": t,
            "datetime": iso(t),
            "fundingRate": f[RATE],
            "fundingTimestamp": int(f[SETTLEMENT]),
            "markPrice": f[MARK],
            "indexPrice": f[INDEX],
            "interval": f"{interval:g}h" if math.isfinite(interval) else None,
            "info": {},
        }

    def leverage_tiers(self, symbol: str) -> list[dict[str, Any]]:
        """The venue's modelled tiers (`tiers.TIER_SCHEDULES`), else one tier at its documented maintenance rate."""
        if symbol not in self._tiers:
            market = self.markets[symbol]
            schedule = tiering.schedule_for(self.id, market["base"])
            if schedule is None:
                schedule = (tiering.Tier(1e12, GENERIC_MAX_LEVERAGE, maintenance_margin_rate(self.id)),)
            settle = market.get("settle") or market["quote"]
            self._tiers[symbol] = tiering.tier_structures(schedule, symbol, settle, str(market["id"]))
        return self._tiers[symbol]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._funding_watches.clear()
        close = getattr(self.source, "close", None)
        if close is not None:
            await close()


def paper_balances(symbols: Sequence[str], capital_usd: float) -> dict[str, float]:
    """A paper account's starting cash: the trader's capital in each quote/settle currency it trades."""
    return {symbol.split("/")[1].split(":")[0]: float(capital_usd) for symbol in symbols}


def open_paper_venues(
    config: FundarbConfig, markets: Mapping[str, Sequence[str]], sources: Mapping[str, Any] | None = None
) -> dict[str, PaperExchange]:
    """One paper venue per exchange, over the configured source (`sources.open_exchange`) or the given ones."""
    from ..sources import open_exchange

    registry = InstrumentRegistry()
    feed_options = {
        "funding_poll_interval_s": config.live.funding_poll_interval_s,
        "ohlcv_timeframe": config.capture.ohlcv_timeframe,
        "stale_timeout_s": dict(config.capture.stale_timeout_s),
        "max_backoff_s": config.live.reconnect_max_backoff_s,
        "book_levels": config.capture.book_levels,
        "book_interval_s": config.capture.book_interval_s,
    }
    out = {}
    anchor = time.monotonic()  # paced replays of several venues run on one clock (the trader reads one)
    for exchange, symbols in markets.items():
        source = sources[exchange] if sources is not None else open_exchange(config, exchange)
        start_clock = getattr(source, "start_clock", None)
        if start_clock is not None:
            start_clock(anchor)
        balances = paper_balances(symbols, config.trade.capital_usd)
        out[exchange] = PaperExchange(source, registry, symbols, balances, feed_options=feed_options)
    return out
