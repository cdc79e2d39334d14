"""The Feed's control flow against a small hand-written ccxt-shaped test double.

The double (`ScriptedExchange`) is only here to drive the feed's own logic deterministically: reconnects,
gaps, staleness, duplicates, candle closing, funding dispatch, pagination. The real sources (sim, replay,
wire replay, REST replay) are exercised through the same Feed in `test_consumer_suite.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core import schema
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.schema import EventKind
from fundarb_dagster.core.sources import EndOfData
from fundarb_dagster.core.sources.candles import CandleState
from fundarb_dagster.core.sources.feed import Batch, Feed

T0 = 1_800_000_000_000
MIN = 60_000
HOUR = 3_600_000

HANG = object()  # a script step: the call never returns (a silently dead subscription)


def _market(symbol: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
    base, rest = symbol.split("/")
    quote, _, settle = rest.partition(":")
    return {"symbol": symbol, "id": base + quote, "base": base, "quote": quote, "settle": settle or None,
            "type": "swap" if settle else "spot", "spot": not settle, "swap": bool(settle), "contractSize": 1.0,
            "info": info or {}}  # fmt: skip


class ScriptedExchange:
    """ccxt-shaped: `id`, `has`, `markets`, `milliseconds()`, `watch_*` / `fetch_*` answering from scripts.

    The clock runs at `speed` exchange ms per wall ms (like the simulator's virtual clock); a script step
    is a payload, an exception instance to raise, `HANG`, or a callable of the current time -> payload.
    """

    def __init__(self, exchange_id: str = "bybit", *, speed: float = 5000.0, has: dict[str, Any] | None = None):
        self.id = exchange_id
        self.speed = speed
        self.rateLimit = 0
        self.has: dict[str, Any] = {"watchTicker": True, "fetchTrades": True, "fetchOHLCV": True,
                                    "unWatchTrades": True, **(has or {})}  # fmt: skip
        self.markets = {s: _market(s) for s in ("BTC/USDT", "BTC/USDT:USDT")}
        self.scripts: dict[str, list[Any]] = {}
        self.calls: Counter[str] = Counter()
        self.call_times: dict[str, list[int]] = {}
        self.unwatched: list[str] = []
        self.rest_trades: list[dict[str, Any]] = []
        self.rest_candles: list[list[float]] = []
        self.rest_funding: list[dict[str, Any]] = []
        self.rest_failures: list[BaseException] = []
        self._t0 = time.monotonic()
        self.ticking = False
        self._ticks = 0

    def milliseconds(self) -> int:
        if self.ticking:  # a deterministic clock: every reading is 20 ms later
            self._ticks += 20
            return T0 + self._ticks
        return T0 + int((time.monotonic() - self._t0) * 1000 * self.speed)

    async def _next(self, name: str) -> Any:
        self.calls[name] += 1
        self.call_times.setdefault(name, []).append(self.milliseconds())
        script = self.scripts.get(name, [])
        if not script:
            raise EndOfData(name)
        step = script.pop(0)
        await asyncio.sleep(0)
        if step is HANG:
            await asyncio.Event().wait()
        if isinstance(step, BaseException):
            raise step
        return step(self.milliseconds()) if callable(step) else step

    async def watch_trades(self, symbol: str, since: Any = None, limit: Any = None, params: Any = None) -> Any:
        return await self._next("watch_trades")

    async def watch_ticker(self, symbol: str, params: Any = None) -> Any:
        return await self._next("watch_ticker")

    async def watch_ohlcv(self, symbol: str, timeframe: str = "1m", since: Any = None, limit: Any = None) -> Any:
        return await self._next("watch_ohlcv")

    async def watch_mark_price(self, symbol: str, params: Any = None) -> Any:
        return await self._next("watch_mark_price")

    async def watch_funding_rate(self, symbol: str, params: Any = None) -> Any:
        return await self._next("watch_funding_rate")

    async def fetch_funding_rate(self, symbol: str, params: Any = None) -> Any:
        return await self._next("fetch_funding_rate")

    async def un_watch_trades(self, symbol: str, params: Any = None) -> None:
        self.unwatched.append(symbol)

    def _rest_call(self, name: str) -> None:
        self.calls[name] += 1
        self.call_times.setdefault(name, []).append(self.milliseconds())
        if self.rest_failures:
            raise self.rest_failures.pop(0)

    async def fetch_trades(self, symbol: str, since: int | None = None, limit: int | None = None) -> Any:
        self._rest_call("fetch_trades")
        rows = [t for t in self.rest_trades if since is None or t["timestamp"] >= since]
        return rows[: limit or len(rows)]

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None):
        self._rest_call("fetch_ohlcv")
        rows = [c for c in self.rest_candles if since is None or c[0] >= since]
        return rows[: limit or len(rows)]

    async def fetch_funding_rate_history(self, symbol: str, since: int | None = None, limit: int | None = None):
        self._rest_call("fetch_funding_rate_history")
        rows = [r for r in self.rest_funding if since is None or r["timestamp"] >= since]
        return rows[: limit or len(rows)]


def _trade(trade_id: int, ts: int, price: float = 100.0, amount: float = 1.0) -> dict[str, Any]:
    return {"id": str(trade_id), "timestamp": ts, "price": price, "amount": amount, "side": "buy",
            "symbol": "BTC/USDT:USDT"}  # fmt: skip


def _at(offset_ms: int, *trade_ids: int) -> Callable[[int], list[dict[str, Any]]]:
    """Trades stamped relative to the exchange clock at delivery (ids given)."""
    return lambda now: [_trade(i, now + offset_ms) for i in trade_ids]


def _registry(exchange: ScriptedExchange) -> InstrumentRegistry:
    registry = InstrumentRegistry()
    registry.add_markets(exchange.id, exchange.markets, list(exchange.markets))
    return registry


async def _collect(feed: Feed, stream: str, symbol: str, limit: int = 1000) -> list[Batch]:
    """The batches of one watch after its first, the CHANNEL event naming the call (checked here)."""
    batches = []
    async for batch in feed.watch(stream, symbol):
        batches.append(batch)
        if len(batches) > limit:
            break
    first = batches.pop(0)
    assert not len(first.records) and first.events["kind"].tolist() == [int(EventKind.CHANNEL)]
    assert first.events["reason"][0].decode().startswith(f"{stream}:")
    return batches


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def _records(batches: list[Batch]) -> np.ndarray:
    parts = [b.records for b in batches if len(b.records)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _events(batches: list[Batch]) -> np.ndarray:
    parts = [b.events for b in batches if len(b.events)]
    return np.concatenate(parts) if parts else schema.empty("capture_events")


def test_redelivered_trades_are_dropped_once_and_reported_as_duplicates() -> None:
    ex = ScriptedExchange()
    ex.scripts["watch_trades"] = [_at(-10, 1, 2), _at(-5, 2, 3), _at(-1, 3, 4)]
    feed = Feed(ex, _registry(ex))
    batches = _run(_collect(feed, "trades", "BTC/USDT:USDT"))
    records = _records(batches)
    assert records.dtype == schema.TRADES
    assert records["trade_id"].tolist() == [1, 2, 3, 4]
    events = _events(batches)
    assert events["kind"].tolist() == [int(EventKind.DUPLICATE)] * 2
    assert events["count"].sum() == 2 == feed.validator.counts["dup:trade_id"]


def test_malformed_trades_are_quarantined_and_the_stream_goes_on() -> None:
    ex = ScriptedExchange()
    bad = [
        lambda now: [{**_trade(1, now), "price": None}, {**_trade(2, now), "price": float("nan")}, _trade(3, now)],
        lambda now: [{**_trade(4, now), "amount": -2.0}, {**_trade(5, now + 10 * HOUR)}],
        _at(0, 6),
    ]
    ex.scripts["watch_trades"] = bad
    feed = Feed(ex, _registry(ex))
    batches = _run(_collect(feed, "trades", "BTC/USDT:USDT"))
    assert _records(batches)["trade_id"].tolist() == [3, 6]
    events = _events(batches)
    reasons = Counter({r.decode(): int(c) for r, c in zip(events["reason"], events["count"], strict=True)})
    assert reasons == {"missing:price": 1, "price:nan": 1, "amount:nonpositive": 1, "ts:future": 1}
    assert feed.validator.counts == reasons


def test_network_errors_reconnect_with_a_gap_from_last_to_first_data_then_backfill_fills_it() -> None:
    ex = ScriptedExchange()
    first_ts: list[int] = []

    def before(now: int) -> list[dict[str, Any]]:
        first_ts.append(now)
        return [_trade(1, now)]

    ex.scripts["watch_trades"] = [
        before,
        ccxt.NetworkError("socket closed"),
        ccxt.ExchangeNotAvailable("502"),
        lambda now: [_trade(5, now), _trade(6, now + 1)],
    ]
    feed = Feed(ex, _registry(ex))

    async def scenario() -> list[Batch]:
        # REST knows the trades the socket missed: 1 again (already emitted), 2..4 inside the gap
        async def fill_rest() -> None:
            while not first_ts:
                await asyncio.sleep(0)
            t = first_ts[0]
            ex.rest_trades = [_trade(1, t), _trade(2, t + 10), _trade(3, t + 20), _trade(4, t + 30)]

        filler = asyncio.ensure_future(fill_rest())
        batches = await _collect(feed, "trades", "BTC/USDT:USDT")
        await filler
        return batches

    batches = _run(scenario())
    events = _events(batches)
    kinds = events["kind"].tolist()
    assert kinds.count(int(EventKind.RECONNECT)) == 2
    reasons = [r.decode() for r in events["reason"][events["kind"] == int(EventKind.RECONNECT)]]
    assert reasons == ["reconnect:NetworkError", "reconnect:ExchangeNotAvailable"]
    gap = events[events["kind"] == int(EventKind.GAP)]
    assert len(gap) == 1 and gap["count"][0] == 2
    records = _records(batches)
    after = int(records["ts_ms"][records["trade_id"] == 5][0])
    assert gap["start_ms"][0] == first_ts[0] and gap["end_ms"][0] == after
    filled = events[events["kind"] == int(EventKind.GAP_FILLED)]
    assert len(filled) == 1 and filled["count"][0] == 3 and filled["reason"][0] == b"rest"
    assert sorted(records["trade_id"].tolist()) == [1, 2, 3, 4, 5, 6]
    assert len(set(records["trade_id"].tolist())) == len(records)  # nothing emitted twice
    assert feed.counts["reconnects"] == 2 and feed.counts["gaps"] == 1


def test_gap_stays_visible_when_the_venue_cannot_backfill() -> None:
    ex = ScriptedExchange(has={"fetchTrades": False})
    ex.scripts["watch_trades"] = [_at(0, 1), ccxt.RequestTimeout("ping"), _at(0, 2)]
    feed = Feed(ex, _registry(ex))
    events = _events(_run(_collect(feed, "trades", "BTC/USDT:USDT")))
    assert int(EventKind.GAP) in events["kind"].tolist()
    assert int(EventKind.GAP_FILLED) not in events["kind"].tolist()
    assert feed.counts["gaps:unfillable"] == 1


def test_reconnect_backoff_doubles_on_the_exchange_clock_up_to_the_cap() -> None:
    ex = ScriptedExchange(speed=200.0)
    ex.scripts["watch_trades"] = [ccxt.NetworkError(str(i)) for i in range(5)] + [_at(0, 1)]
    feed = Feed(ex, _registry(ex), max_backoff_s=2.0, backfill_gaps=False)
    _run(_collect(feed, "trades", "BTC/USDT:USDT"))
    times = ex.call_times["watch_trades"]  # 5 failures, the data, then the end of the script
    waits = np.diff(times)[:5]
    expected = [500, 1000, 2000, 2000, 2000]
    assert all(w >= e for w, e in zip(waits, expected, strict=True))


def test_silent_subscription_is_detected_on_the_exchange_clock_and_restarted() -> None:
    ex = ScriptedExchange()
    ex.scripts["watch_trades"] = [_at(0, 1), HANG, _at(0, 2)]
    feed = Feed(ex, _registry(ex), stale_timeout_s={"trades": 5.0}, backfill_gaps=False)
    batches = _run(_collect(feed, "trades", "BTC/USDT:USDT"))
    events = _events(batches)
    stale = events[events["kind"] == int(EventKind.STALE)]
    assert len(stale) == 1
    assert stale["end_ms"][0] - stale["start_ms"][0] > 5000  # silent for longer than the timeout
    assert ex.unwatched == ["BTC/USDT:USDT"]  # the dead subscription was dropped at the source
    gap = events[events["kind"] == int(EventKind.GAP)]
    assert len(gap) == 1 and gap["reason"][0] == b"stale"
    assert _records(batches)["trade_id"].tolist() == [1, 2]


class _AnsweredDuringABusyLoop(ScriptedExchange):
    """watch_trades: its first answer is set by a timer while a callback holds the loop (a busy stretch
    longer than the timeout and min_stale_wall_s), so the watchdog wakes before the waiting call has run."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0

    async def watch_trades(self, symbol: str, since: Any = None, limit: Any = None, params: Any = None) -> Any:
        if self.answered:
            raise EndOfData("watch_trades")
        self.answered += 1
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        # the busy stretch (the loop runs nothing else meanwhile) outlasts min_stale_wall_s (0.5 s), when the
        # watchdog's timer is due; the answer's timer falls due after the watchdog's, inside the stretch
        loop.call_later(0.005, time.sleep, 1.0)
        loop.call_later(0.7, lambda: answer.set_result([_trade(1, self.milliseconds())]))
        return await answer


def test_a_busy_loop_is_not_taken_for_silence() -> None:
    # The answer is in after the busy stretch, its task not yet run, when the watchdog wakes: the watchdog
    # yields to the loop once before it decides, and the call returns its trade instead of a STALE restart.
    ex = _AnsweredDuringABusyLoop()
    feed = Feed(ex, _registry(ex), stale_timeout_s={"trades": 5.0}, backfill_gaps=False)
    batches = _run(_collect(feed, "trades", "BTC/USDT:USDT"))
    assert feed.counts["stale"] == 0 and ex.unwatched == []
    assert int(EventKind.STALE) not in _events(batches)["kind"].tolist()
    assert _records(batches)["trade_id"].tolist() == [1]


def _watchdogs() -> list[asyncio.Task[Any]]:
    """The staleness watchdogs still running."""
    return [t for t in asyncio.all_tasks() if not t.done() and t.get_coro().__qualname__ == "Feed._watchdog"]


def test_a_cancel_from_outside_reaches_the_watch_and_its_watchdog_ends_with_it() -> None:
    ex = ScriptedExchange()
    ex.scripts["watch_trades"] = [_at(0, 1), HANG]
    feed = Feed(ex, _registry(ex), stale_timeout_s={"trades": 3600.0}, backfill_gaps=False)
    got: list[Batch] = []

    async def consume() -> None:
        async for batch in feed.watch("trades", "BTC/USDT:USDT"):
            got.append(batch)

    async def main() -> list[asyncio.Task[Any]]:
        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)  # the watch hangs in its second call, well inside the timeout
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # the watchdog's cancel is delivered
        return _watchdogs()

    assert _run(main()) == []  # no watchdog left behind
    assert feed.counts["stale"] == 0
    assert _records(got)["trade_id"].tolist() == [1]


def test_the_watchdog_ends_when_a_consumer_stops_reading() -> None:
    ex = ScriptedExchange()
    ex.scripts["watch_trades"] = [_at(0, i) for i in range(1, 6)]

    async def main() -> list[asyncio.Task[Any]]:
        feed = Feed(ex, _registry(ex), stale_timeout_s={"trades": 5.0}, backfill_gaps=False)
        await _collect(feed, "trades", "BTC/USDT:USDT", limit=2)  # breaks out of the watch after 3 batches
        for _ in range(3):  # the dropped generator's aclose (asyncio's finalizer), then the watchdog's cancel
            await asyncio.sleep(0)
        return _watchdogs()

    assert _run(main()) == []


class _AlwaysReady(ScriptedExchange):
    """watch_trades answers at once, without ever waiting (a source with data always there)."""

    def __init__(self, speed: float) -> None:
        super().__init__(speed=speed)
        self.served = 0

    async def watch_trades(self, symbol: str, since: Any = None, limit: Any = None, params: Any = None) -> Any:
        self.served += 1
        return [_trade(self.served, self.milliseconds())]


async def _turns_beside(work: Awaitable[Any]) -> tuple[int, Any]:
    """`work`'s result, and how many turns another task of the loop got while it ran."""
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    seen = turns
    result = await work
    task.cancel()
    return turns - seen, result


@pytest.mark.parametrize("speed", [5000.0, 0.0])  # paced (with the watchdog) and unpaced
def test_a_stream_whose_calls_never_wait_still_lets_the_other_tasks_run(speed: float) -> None:
    ex = _AlwaysReady(speed)
    feed = Feed(ex, _registry(ex), stale_timeout_s={"trades": 5.0}, backfill_gaps=False)

    async def two_hundred_batches() -> None:
        batches = 0
        async for _ in feed.watch("trades", "BTC/USDT:USDT"):
            batches += 1
            if batches == 200:
                break

    turns, _ = _run(_turns_beside(two_hundred_batches()))
    assert turns >= 199  # the other task ran once per call


class _AlwaysWaits(_AlwaysReady):
    """watch_trades waits for a turn of the loop before each answer, as a socket's message does."""

    async def watch_trades(self, symbol: str, since: Any = None, limit: Any = None, params: Any = None) -> Any:
        await asyncio.sleep(0)
        return await super().watch_trades(symbol)


@pytest.mark.parametrize("speed", [5000.0, 0.0])
def test_a_call_that_waited_for_its_answer_is_not_followed_by_an_extra_turn(speed: float) -> None:
    """The loop's turn per call is the call's own wait when it waits: the other task runs once per call, not twice
    (the Feed's own yield is kept for calls answered at once, above), and the trades are all there."""
    ex = _AlwaysWaits(speed)
    feed = Feed(ex, _registry(ex), stale_timeout_s={"trades": 5.0}, backfill_gaps=False)
    turns_seen, batches = _run(_turns_beside(_collect(feed, "trades", "BTC/USDT:USDT", limit=200)))
    assert 200 <= turns_seen <= 203  # one turn per call (and the first call's own yield)
    assert _records(batches)["trade_id"].tolist() == list(range(1, 201))


def _candle(ts: int, o: float, h: float, low: float, c: float, v: float) -> list[float]:
    return [ts, o, h, low, c, v]


def test_candles_are_emitted_once_when_closed_with_their_final_values() -> None:
    ex = ScriptedExchange()
    t = (T0 // MIN) * MIN
    ex.scripts["watch_ohlcv"] = [
        [_candle(t, 10, 11, 9, 10.5, 1)],
        [_candle(t, 10, 12, 9, 11.0, 2)],
        [_candle(t, 10, 12, 8, 11.5, 3), _candle(t + MIN, 11.5, 11.5, 11.5, 11.5, 0.1)],  # t closes
        [_candle(t + MIN, 11.5, 13, 11, 12.0, 4)],
        [_candle(t, 10, 12, 8, 11.5, 3)],  # a late repeat of a closed candle: not emitted again
        [_candle(t + 2 * MIN, 12, 12, 12, 12, 1)],  # t+1m closes
    ]
    feed = Feed(ex, _registry(ex))
    records = _records(_run(_collect(feed, "ohlcv", "BTC/USDT:USDT")))
    assert records["ts_ms"].tolist() == [t, t + MIN]
    assert records[["open", "high", "low", "close", "volume"]][0].tolist() == (10, 12, 8, 11.5, 3)
    assert records[["open", "high", "low", "close", "volume"]][1].tolist() == (11.5, 13, 11, 12.0, 4)
    assert (records["timeframe_s"] == 60).all()


def _candle_calls(rng: np.random.Generator, n: int) -> list[Any]:
    """Candle calls as a venue sends them, mostly one update of the forming candle; among them closes, several
    candles at once, a candle twice in one call, late updates of a closed candle, bad values, a tuple, a time
    as a float."""
    t = (T0 // MIN) * MIN
    calls: list[Any] = []
    for _ in range(n):
        price = float(rng.uniform(90, 110))
        candle = _candle(t, price, price + 1, price - 1, price + 0.5, float(rng.uniform(0, 5)))
        roll = rng.random()
        if roll < 0.1:
            t += MIN
            calls.append([candle, _candle(t, price, price, price, price, 0.0)])  # the forming one closes
        elif roll < 0.15:
            calls.append([_candle(t - MIN, price, price + 1, price - 1, price, 1.0)])  # a late update
        elif roll < 0.2:
            calls.append([candle, list(candle)])  # twice in one call
        elif roll < 0.3:
            bad = list(candle)
            bad[int(rng.integers(1, 6))] = rng.choice([float("nan"), -1.0, float("inf"), None])  # type: ignore[call-overload]
            calls.append([bad])
        elif roll < 0.33:
            calls.append([tuple(candle)])
        elif roll < 0.36:
            calls.append([[t + 0.7, *candle[1:]]])
        else:
            calls.append([candle])
    return calls


def test_the_forming_candle_shortcut_is_the_full_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most candle calls update the forming candle and the Feed keeps it without the full pass (`screen`,
    `CandleState.close`): records, events and counts are those of the full pass over the same calls."""
    calls = _candle_calls(np.random.default_rng(3), 400)
    taken = []
    shortcut = CandleState.forming_update

    def counted(self: CandleState, *args: Any) -> Any:
        result = shortcut(self, *args)
        taken.append(result is not None)
        return result

    class Ticking(ScriptedExchange):
        def milliseconds(self) -> int:  # a deterministic clock, 6 s later at every reading: the candles' pace
            self._ticks += 6_000
            return T0 + self._ticks

    def run() -> tuple[list[Batch], Feed]:
        ex = Ticking()
        ex.scripts["watch_ohlcv"] = [list(c) for c in calls]
        feed = Feed(ex, _registry(ex), backfill_gaps=False)
        return _run(_collect(feed, "ohlcv", "BTC/USDT:USDT")), feed

    monkeypatch.setattr(CandleState, "forming_update", counted)
    fast, fast_feed = run()
    monkeypatch.setattr(CandleState, "forming_update", lambda self, *args: None)
    slow, slow_feed = run()
    assert _records(fast).tobytes() == _records(slow).tobytes() and len(_records(slow)) > 20
    assert _events(fast).tobytes() == _events(slow).tobytes() and len(_events(slow)) > 20
    assert fast_feed.counts == slow_feed.counts and fast_feed.validator.counts == slow_feed.validator.counts
    assert taken.count(True) > 200 and taken.count(False) > 80  # the shortcut took most calls, not all
    assert len(slow_feed.validator.counts) >= 6  # late, twice in a call, bad prices and volumes, malformed


def test_ticker_updates_with_identical_timestamps_are_dropped() -> None:
    ex = ScriptedExchange()
    tick = {"symbol": "BTC/USDT", "timestamp": T0, "bid": 99.0, "ask": 100.0, "last": 99.5}
    ex.scripts["watch_ticker"] = [tick, dict(tick), {**tick, "timestamp": T0 + 5}]
    feed = Feed(ex, _registry(ex))
    batches = _run(_collect(feed, "tickers", "BTC/USDT"))
    assert _records(batches)["ts_ms"].tolist() == [T0, T0 + 5]
    assert feed.validator.counts["dup:ts"] == 1


@pytest.mark.parametrize(
    ("exchange_id", "has", "mode", "method"),
    [
        ("binanceusdm", {"watchMarkPrice": True}, "mark_price", "watch_mark_price"),
        ("binance", {"watchMarkPrices": True}, "mark_price", "watch_mark_price"),
        ("bybit", {}, "ticker", "watch_ticker"),
        ("hyperliquid", {}, "ticker", "watch_ticker"),
        ("okx", {"watchFundingRate": True}, "funding_rate", "watch_funding_rate"),
        ("kraken", {}, "poll", "fetch_funding_rate"),
    ],
)
def test_funding_is_read_where_each_venue_streams_it(exchange_id: str, has: dict, mode: str, method: str) -> None:
    ex = ScriptedExchange(exchange_id, has=has)
    settle = (T0 // (8 * HOUR) + 1) * 8 * HOUR
    payload = {
        "mark_price": {"symbol": "BTC/USDT:USDT", "timestamp": T0, "markPrice": 100.0,
                       "info": {"r": "0.0001", "T": settle, "E": T0}},
        "ticker": {"symbol": "BTC/USDT:USDT", "timestamp": T0, "markPrice": 100.0,
                   "info": {"fundingRate": "0.0001", "nextFundingTime": str(settle), "fundingIntervalHour": "8"}},
        "funding_rate": {"symbol": "BTC/USDT:USDT", "timestamp": T0, "fundingRate": 0.0001,
                         "fundingTimestamp": settle, "interval": "8h"},
        "poll": {"symbol": "BTC/USDT:USDT", "timestamp": T0, "fundingRate": 0.0001, "fundingTimestamp": settle,
                 "interval": "8h"},
    }[mode]  # fmt: skip
    ex.scripts[method] = [payload]
    registry = _registry(ex)
    if mode == "mark_price":  # binance's mark price stream states no interval: the registry's history does
        registry.observe_interval(exchange_id, "BTC/USDT:USDT", T0 - HOUR, 8.0)
    feed = Feed(ex, registry)
    assert feed.funding_mode() == mode
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    assert ex.calls[method] >= 1
    assert records.dtype == schema.FUNDING
    assert records["funding_rate"].tolist() == [0.0001]
    assert records["funding_ts_ms"].tolist() == [settle]
    assert records["interval_h"].tolist() == [8.0]
    assert records["is_settled"].tolist() == [0]
    assert registry.interval_at(exchange_id, "BTC/USDT:USDT", T0) == 8.0


def test_polled_funding_waits_the_poll_interval_on_the_exchange_clock() -> None:
    ex = ScriptedExchange("kraken")
    ex.scripts["fetch_funding_rate"] = [
        lambda now, i=i: {"timestamp": now, "fundingRate": 0.0001 * (i + 1), "fundingTimestamp": now + HOUR,
                          "interval": "4h"}
        for i in range(3)
    ]  # fmt: skip
    feed = Feed(ex, _registry(ex), funding_poll_interval_s=30.0)
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    assert records["funding_rate"].tolist() == pytest.approx([0.0001, 0.0002, 0.0003])
    assert (records["interval_h"] == 4.0).all()
    assert all(d >= 30_000 for d in np.diff(ex.call_times["fetch_funding_rate"]))


def test_hyperliquid_interval_learned_once_from_fetch_funding_rate_when_tickers_do_not_state_it() -> None:
    ex = ScriptedExchange("hyperliquid", has={"fetchFundingRate": True})
    ex.markets = {"BTC/USDC:USDC": _market("BTC/USDC:USDC")}
    ex.scripts["fetch_funding_rate"] = [{"fundingRate": 0.00001, "interval": "1h"}]
    ex.scripts["watch_ticker"] = [
        lambda now: {"symbol": "BTC/USDC:USDC", "timestamp": None, "info": {"funding": "0.0000125", "markPx": "100"}}
    ]
    registry = _registry(ex)
    feed = Feed(ex, registry)
    records = _records(_run(_collect(feed, "funding", "BTC/USDC:USDC")))
    assert records["interval_h"].tolist() == [1.0]
    ts = int(records["ts_ms"][0])
    assert records["funding_ts_ms"][0] == (ts // HOUR + 1) * HOUR
    assert ex.calls["fetch_funding_rate"] == 1


def test_repeated_funding_snapshots_are_thinned_but_changes_pass() -> None:
    ex = ScriptedExchange()
    settle = (T0 // (8 * HOUR) + 1) * 8 * HOUR

    def tick(rate: str) -> Callable[[int], dict[str, Any]]:
        info = {"fundingRate": rate, "nextFundingTime": str(settle), "fundingIntervalHour": "8"}
        return lambda now: {"timestamp": now, "markPrice": 100.0, "info": info}

    ex.scripts["watch_ticker"] = [tick("0.0001"), tick("0.0001"), tick("0.0001"), tick("0.0002")]
    feed = Feed(ex, _registry(ex), funding_poll_interval_s=3600.0)
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    assert records["funding_rate"].tolist() == [0.0001, 0.0002]
    assert feed.counts["funding:unchanged"] == 2


def _hourly_ticks(ex: ScriptedExchange, steps: list[tuple[int, int, str]]) -> None:
    """bybit tickers at given exchange times (the clock jumps there), each naming a settlement with a rate."""

    def tick(at: int, settle: int, rate: str) -> Callable[[int], dict[str, Any]]:
        def step(now: int) -> dict[str, Any]:
            ex._ticks = at - T0  # the exchange clock reads `at` from here on
            info = {"fundingRate": rate, "nextFundingTime": str(settle), "fundingIntervalHour": "1"}
            return {"timestamp": at, "markPrice": 100.0, "info": info}

        return step

    ex.ticking = True
    ex.scripts["watch_ticker"] = [tick(*step) for step in steps]


def test_a_settlement_the_stream_moved_past_is_fetched_settled_before_the_next_one_is_named() -> None:
    """The capture missed the interval's last prediction (0.0001 at 10 min before, the venue settled 0.00013):
    the settled row from the venue's history comes before the row naming the next settlement."""
    ex = ScriptedExchange(has={"fetchFundingRateHistory": True})
    s1 = (T0 // HOUR + 1) * HOUR
    ex.rest_funding = [{"symbol": "BTC/USDT:USDT", "timestamp": s1 + 7, "fundingRate": 0.00013}]
    _hourly_ticks(ex, [(s1 - 600_000, s1, "0.0001"), (s1 + 45_000, s1 + HOUR, "0.0002")])
    feed = Feed(ex, _registry(ex))
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    rows = [(int(r["is_settled"]), int(r["funding_ts_ms"]), float(r["funding_rate"])) for r in records]
    assert rows == [(0, s1, 0.0001), (1, s1 + 7, 0.00013), (0, s1 + HOUR, 0.0002)]
    assert records["interval_h"].tolist() == [1.0, 1.0, 1.0]
    assert feed.counts["funding:settled"] == 1


def test_a_settled_rate_not_published_yet_is_asked_again_then_counted_missing() -> None:
    ex = ScriptedExchange(has={"fetchFundingRateHistory": True})
    s1 = (T0 // HOUR + 1) * HOUR
    steps = [(s1 - 600_000, s1, "0.0001"), (s1 + 10_000, s1 + HOUR, "0.0002"), (s1 + 20_000, s1 + HOUR, "0.0003"),
             (s1 + 90_000, s1 + HOUR, "0.0004"), (s1 + 2 * HOUR - 60_000, s1 + HOUR, "0.0005")]  # fmt: skip
    _hourly_ticks(ex, steps)
    feed = Feed(ex, _registry(ex), funding_poll_interval_s=60.0)
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    assert records["is_settled"].tolist() == [0] * 5  # the venue never published s1: the predictions stand
    # asked when the stream moved on, not again within the poll interval, again after it, then given up
    assert ex.calls["fetch_funding_rate_history"] == 3
    assert feed.counts["funding:settled_missing"] == 1


def test_a_venue_without_funding_history_keeps_the_predictions_and_says_so() -> None:
    ex = ScriptedExchange()
    s1 = (T0 // HOUR + 1) * HOUR
    _hourly_ticks(ex, [(s1 - 600_000, s1, "0.0001"), (s1 + 45_000, s1 + HOUR, "0.0002")])
    feed = Feed(ex, _registry(ex))
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    assert records["is_settled"].tolist() == [0, 0]
    assert feed.counts["funding:settled_unavailable"] == 1
    assert ex.calls["fetch_funding_rate_history"] == 0


def test_funding_on_a_spot_symbol_is_a_clear_error() -> None:
    ex = ScriptedExchange()
    feed = Feed(ex, _registry(ex))
    with pytest.raises(ValueError, match="not a perpetual"):
        _run(_collect(feed, "funding", "BTC/USDT"))


def test_ohlcv_history_pages_through_the_window_with_closed_candles_only() -> None:
    ex = ScriptedExchange(speed=1.0)
    now = ex.milliseconds()
    start = (now // MIN) * MIN - 2500 * MIN
    ex.rest_candles = [_candle(start + i * MIN, 10, 11, 9, 10, 1) for i in range(2501)]  # the last one is forming
    feed = Feed(ex, _registry(ex), history_limit=300)

    async def pull(since: int, until: int) -> list[Batch]:
        return [b async for b in feed.history("ohlcv", "BTC/USDT:USDT", since, until)]

    records = _records(_run(pull(start + 5 * MIN, now + HOUR)))
    expected = [start + i * MIN for i in range(5, 2500)]
    assert records["ts_ms"].tolist() == expected
    assert ex.calls["fetch_ohlcv"] == len(range(0, len(expected), 300)) + 1  # a last call finds nothing newer
    progress = feed.progress[("ohlcv", "BTC/USDT:USDT")]
    assert progress.done and progress.rows == len(expected) and progress.pages == 9
    # until is exclusive
    records = _records(_run(pull(start, start + 10 * MIN)))
    assert records["ts_ms"].tolist() == [start + i * MIN for i in range(10)]


def test_funding_history_is_settled_with_the_interval_from_settlement_spacing() -> None:
    ex = ScriptedExchange(speed=1.0)
    base = (T0 // (8 * HOUR)) * 8 * HOUR - 30 * 8 * HOUR
    times = [base + i * 8 * HOUR for i in range(10)]
    times += [times[-1] + (i + 1) * 4 * HOUR for i in range(10)]  # the venue moved to 4h
    del times[4]  # a missing settlement must not read as a 16h interval
    ex.rest_funding = [{"symbol": "BTC/USDT:USDT", "timestamp": t + 3, "fundingRate": 0.0001} for t in times]
    registry = _registry(ex)
    feed = Feed(ex, registry, history_limit=7)

    async def pull() -> list[Batch]:
        return [b async for b in feed.history("funding", "BTC/USDT:USDT", base - HOUR, T0)]

    records = _records(_run(pull()))
    assert records["is_settled"].tolist() == [1] * len(times)
    assert records["funding_ts_ms"].tolist() == [t + 3 for t in times]
    assert records["interval_h"].tolist()[1:9] == [8.0] * 8
    assert records["interval_h"].tolist()[-10:] == [4.0] * 10
    assert registry.interval_at("bybit", "BTC/USDT:USDT", times[5]) == 8.0
    assert registry.interval_at("bybit", "BTC/USDT:USDT", times[-1] + 3) == 4.0
    assert ex.calls["fetch_funding_rate_history"] >= 3


def test_history_retries_network_errors_and_spaces_calls_by_rate_limit() -> None:
    ex = ScriptedExchange(speed=1e6)
    ex.ticking = True  # call times are then exact: pacing is checked on the exchange clock, not wall time
    ex.rateLimit = 200
    now = ex.milliseconds() + 100_000
    trades = [_trade(i, now - 10_000 + i // 3) for i in range(30)]  # three trades share each millisecond
    ex.rest_trades = trades
    ex.rest_failures = [ccxt.NetworkError("reset"), ccxt.RequestTimeout("slow")]
    feed = Feed(ex, _registry(ex), history_limit=4)

    async def pull() -> list[Batch]:
        return [b async for b in feed.history("trades", "BTC/USDT:USDT", now - 20_000, now)]

    records = _records(_run(pull()))
    assert records["trade_id"].tolist() == list(range(30))  # same-millisecond trades across pages: none lost
    assert feed.counts["rest:retries"] == 2
    assert all(d >= 200 for d in np.diff(ex.call_times["fetch_trades"])), np.diff(ex.call_times["fetch_trades"])


def test_history_gives_up_after_max_retries_with_the_error() -> None:
    ex = ScriptedExchange()
    ex.rest_failures = [ccxt.NetworkError(str(i)) for i in range(5)]
    feed = Feed(ex, _registry(ex), max_retries=2, max_backoff_s=0.1)

    async def pull() -> list[Batch]:
        return [b async for b in feed.history("ohlcv", "BTC/USDT", T0 - HOUR, T0)]

    with pytest.raises(ccxt.NetworkError):
        _run(pull())


def test_end_of_a_recording_ends_the_watch_and_flushes_a_finished_candle() -> None:
    ex = ScriptedExchange()
    t = (T0 // MIN) * MIN - 5 * MIN  # long finished by the exchange clock
    ex.scripts["watch_ohlcv"] = [[_candle(t, 1, 2, 0.5, 1.5, 3)]]
    feed = Feed(ex, _registry(ex))
    records = _records(_run(_collect(feed, "ohlcv", "BTC/USDT")))
    assert records["ts_ms"].tolist() == [t]
    ex.scripts["watch_trades"] = [EOFError("wire recording exhausted")]
    assert _run(_collect(feed, "trades", "BTC/USDT")) == []


def test_unknown_streams_and_symbols_fail_clearly() -> None:
    ex = ScriptedExchange()
    feed = Feed(ex, _registry(ex))
    with pytest.raises(ValueError, match="stream"):
        _run(_collect(feed, "orderbook", "BTC/USDT"))
    with pytest.raises(KeyError, match="ETH/USDT"):
        _run(_collect(feed, "trades", "ETH/USDT"))


def test_binance_interval_cut_is_read_from_the_next_settlement_moving_closer() -> None:
    ex = ScriptedExchange("binanceusdm", has={"watchMarkPrice": True})
    registry = _registry(ex)
    registry.observe_interval("binanceusdm", "BTC/USDT:USDT", T0 - 30 * HOUR, 8.0)
    first = (T0 // (8 * HOUR) + 1) * 8 * HOUR

    def mark(settlement: int, rate: str) -> Callable[[int], dict[str, Any]]:
        return lambda now: {"timestamp": now, "markPrice": 100.0, "info": {"r": rate, "T": settlement, "E": now}}

    # the venue settles at `first`, then announces the next settlement 4 h later: the interval was cut to 4 h
    ex.scripts["watch_mark_price"] = [mark(first, "0.0001"), mark(first + 4 * HOUR, "0.0030")]
    feed = Feed(ex, registry)
    records = _records(_run(_collect(feed, "funding", "BTC/USDT:USDT")))
    assert records["funding_ts_ms"].tolist() == [first, first + 4 * HOUR]
    assert records["interval_h"].tolist() == [8.0, 4.0]
    assert registry.interval_at("binanceusdm", "BTC/USDT:USDT", first + 4 * HOUR) == 4.0
    assert registry.interval_at("binanceusdm", "BTC/USDT:USDT", first) == 8.0
    assert feed.counts["funding:interval_inferred"] == 1


def test_an_unexpected_source_error_is_a_reconnect_but_a_bad_symbol_is_raised() -> None:
    ex = ScriptedExchange()
    ex.scripts["watch_trades"] = [IndexError("source bug"), _at(0, 1)]
    feed = Feed(ex, _registry(ex), backfill_gaps=False)
    batches = _run(_collect(feed, "trades", "BTC/USDT:USDT"))
    events = _events(batches)
    assert events["reason"][events["kind"] == int(EventKind.RECONNECT)].tolist() == [b"error:IndexError"]
    assert _records(batches)["trade_id"].tolist() == [1]
    assert feed.counts["errors:IndexError"] == 1
    ex.scripts["watch_trades"] = [ccxt.BadSymbol("no such market")]
    with pytest.raises(ccxt.BadSymbol):
        _run(_collect(feed, "trades", "BTC/USDT:USDT"))
