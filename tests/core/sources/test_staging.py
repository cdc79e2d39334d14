"""A staging Feed (tickers and trades processed a batch at a time) against the per-call path it replaces.

The slow, obvious computation is the Feed without staging: one `_process` per call. The same calls go through
both, and everything they produce must be identical: records byte for byte (per stream and instrument, in
order), events, the validator's counts and the Feed's. Sources: the recorded bybit session through the real
ccxt.pro classes, and the simulator with malformed, duplicate and out-of-order messages and a disconnect,
recorded once and replayed to both (a paced simulator is not repeatable run to run).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import FaultConfig, SimConfig
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.schema import EventKind
from fundarb_dagster.core.sources import EndOfData, normalize, staging
from fundarb_dagster.core.sources import feed as feed_module
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sources.validation import Validator, plain_tickers
from fundarb_dagster.core.sources.wire import create_wire_exchange

SIM_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT")


def _by_instrument(records: np.ndarray) -> np.ndarray:
    """Records of one stream grouped by instrument, each instrument's in arrival order (streams of different
    instruments interleave differently when one of them holds calls back)."""
    return records[np.argsort(records["instrument_id"], kind="stable")]


def _sorted_events(events: np.ndarray) -> np.ndarray:
    return events[np.lexsort((events["reason"], events["start_ms"], events["ts_ms"], events["kind"],
                              events["stream"], events["instrument_id"]))]  # fmt: skip


async def _pump(feed: Feed, subscriptions: list[tuple[str, str]], one_by_one: bool = False) -> dict[str, list]:
    """Every batch of the subscriptions, watched together (or one after the other: a recording whose one
    clock each call sets is then repeatable)."""
    out: dict[str, list[np.ndarray]] = {"capture_events": []}

    async def one(stream: str, symbol: str) -> None:
        async for batch in feed.watch(stream, symbol):
            out.setdefault(batch.stream, []).append(batch.records)
            out["capture_events"].append(batch.events)

    if one_by_one:
        for stream, symbol in subscriptions:
            await one(stream, symbol)
    else:
        await asyncio.gather(*(one(stream, symbol) for stream, symbol in subscriptions))
    return out


def _assert_same(per_call: tuple[dict, Feed], staged: tuple[dict, Feed]) -> None:
    (want, want_feed), (got, got_feed) = per_call, staged
    assert set(want) == set(got)
    for stream in want:
        a, b = np.concatenate(want[stream]), np.concatenate(got[stream])
        if stream == "capture_events":
            a, b = _sorted_events(a), _sorted_events(b)
        else:
            a, b = _by_instrument(a), _by_instrument(b)
        assert len(a) == len(b), stream
        assert a.tobytes() == b.tobytes(), stream
    assert got_feed.validator.counts == want_feed.validator.counts
    assert got_feed.counts == want_feed.counts


# -- the recorded bybit session -----------------------------------------------------------------------------
def _wire_run(path: Path, stage_records: int) -> tuple[dict, Feed]:
    async def go() -> tuple[dict, Feed]:
        exchange = create_wire_exchange("bybit", path, speed=0)
        markets = await exchange.load_markets()
        symbols = [s for s in ("BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT", "ETH/USDT") if s in markets]
        registry = InstrumentRegistry()
        registry.add_markets("bybit", markets, symbols)
        stale = {s: 1e9 for s in schema.MARKET_STREAMS}
        feed = Feed(exchange, registry, stale_timeout_s=stale, stage_records=stage_records, stage_max_age_s=60)
        try:
            out = await _pump(feed, [(st, sy) for sy in symbols for st in ("trades", "tickers", "ohlcv")])
        finally:
            await exchange.close()
        return out, feed

    return asyncio.run(go())


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each staged batch was taken whole by the batch pass (True) or went call by call (False)."""
    batches: list[bool] = []
    original = staging.process_staged

    def counted(*args: Any) -> Any:
        result = original(*args)
        batches.append(result is not None)
        return result

    monkeypatch.setattr(staging, "process_staged", counted)
    return batches


@pytest.mark.parametrize("stage_records", [5, 256])
def test_the_recorded_bybit_session_lands_the_same_staged_as_call_by_call(
    fixtures_dir: Path, stage_records: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fixtures_dir / "ws_recordings" / "BYBIT.jsonl.zst"
    per_call = _wire_run(path, 0)
    batches = _count_batches(monkeypatch)
    staged = _wire_run(path, stage_records)
    _assert_same(per_call, staged)
    records = np.concatenate(staged[0]["tickers"])
    assert len(records) > 600 and len(np.concatenate(staged[0]["trades"])) > 90
    assert sum(batches) >= 2 and all(batches)  # the batch pass took every batch of this clean session


# -- the simulator with faults, recorded once ---------------------------------------------------------------
class _Replayed:
    """ccxt-shaped, unpaced: answers each `watch_*` from a recording of (result, clock) per call, its clock the
    recorded one; a recorded exception is raised; the recording's end is EndOfData."""

    speed = 0

    def __init__(self, source: SimExchange, recording: dict[tuple[str, str], list[tuple[Any, int]]]) -> None:
        self.id = source.id
        self.markets = source.markets
        self.has = {"watchTicker": True}  # no REST: a gap stays visible, no backfill
        self.options: dict[str, Any] = {}
        self.recording = {key: list(steps) for key, steps in recording.items()}
        self.clock = min(steps[0][1] for steps in recording.values())

    def milliseconds(self) -> int:
        return self.clock

    async def _next(self, name: str, symbol: str) -> Any:
        steps = self.recording[(name, symbol)]
        if not steps:
            raise EndOfData(name)
        result, self.clock = steps.pop(0)
        await asyncio.sleep(0)
        if isinstance(result, BaseException):
            raise result
        return copy.copy(result)  # a new list, as ccxt gives; the structures are never changed by the Feed

    async def watch_trades(self, symbol: str, *args: Any, **kwargs: Any) -> Any:
        return await self._next("trades", symbol)

    async def watch_ticker(self, symbol: str, *args: Any, **kwargs: Any) -> Any:
        return await self._next("tickers", symbol)


SIM_FAULTS = FaultConfig(malformed_rate=0.03, duplicate_rate=0.05, out_of_order_rate=0.05)


def _record_sim(
    calls: int, faults: FaultConfig = SIM_FAULTS
) -> tuple[SimExchange, dict[tuple[str, str], list[tuple[Any, int]]]]:
    config = SimConfig(seed=11, speed=2_000.0, start="2026-11-01T00:00:00Z", faults=faults)

    async def go() -> tuple[SimExchange, dict]:
        ex = SimExchange("bybit", config, symbols=list(SIM_SYMBOLS))
        await ex.load_markets()
        recording: dict[tuple[str, str], list[tuple[Any, int]]] = {}
        for symbol in SIM_SYMBOLS:
            for stream, call in (("trades", ex.watch_trades), ("tickers", ex.watch_ticker)):
                steps = recording.setdefault((stream, symbol), [])
                for i in range(calls):
                    if i == calls // 2:  # a disconnect: what was staged before it lands before its events
                        steps.append((ccxt.NetworkError("recorded disconnect"), ex.milliseconds()))
                    result = await call(symbol)
                    steps.append((copy.deepcopy(result), ex.milliseconds()))
        await ex.close()
        return ex, recording

    return asyncio.run(go())


def _replay_run(source: SimExchange, recording: dict, stage_records: int) -> tuple[dict, Feed]:
    async def go() -> tuple[dict, Feed]:
        exchange = _Replayed(source, recording)
        registry = InstrumentRegistry()
        registry.add_markets("bybit", exchange.markets, list(SIM_SYMBOLS))
        feed = Feed(exchange, registry, stage_records=stage_records, stage_max_age_s=60, max_backoff_s=0.001)
        subscriptions = [(st, sy) for sy in SIM_SYMBOLS for st in ("trades", "tickers")]
        return await _pump(feed, subscriptions, one_by_one=True), feed

    return asyncio.run(go())


def test_faulty_messages_are_named_the_same_staged_as_call_by_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "_INITIAL_BACKOFF_S", 0.001)  # the recording's disconnects: no real wait
    source, recording = _record_sim(calls=60)
    per_call = _replay_run(source, recording, 0)
    batches = _count_batches(monkeypatch)
    for stage_records in (4, 64, 10_000):
        _assert_same(per_call, _replay_run(source, recording, stage_records))
    assert sum(batches) > 10 and batches.count(False) > 10  # both passes ran: whole batches and call by call
    counts = per_call[1].validator.counts
    # the faults the comparison covers: bad values, venue duplicates, trades out of time order
    assert sum(n for reason, n in counts.items() if ":" in reason and not reason.startswith(("dup", "ts"))) > 3
    assert counts["dup:trade_id"] > 3 and counts["ts:late"] > 3
    kinds = np.concatenate(per_call[0]["capture_events"])["kind"]
    assert (kinds == int(EventKind.RECONNECT)).sum() == 4 and (kinds == int(EventKind.GAP)).sum() == 4


# -- the batch pass against one call at a time ----------------------------------------------------------------
def _ticker(ts: int | None, bid: float = 100.0, ask: float = 101.0, **fields: Any) -> dict[str, Any]:
    return {"timestamp": ts, "bid": bid, "ask": ask, "last": 100.5, "bidVolume": 2.0, "askVolume": 3.0,
            "markPrice": 100.4, "indexPrice": None, **fields}  # fmt: skip


def _instruments() -> list[Any]:
    registry = InstrumentRegistry()
    markets = {
        "BTC/USDT": {"symbol": "BTC/USDT", "id": "BTCUSDT", "base": "BTC", "quote": "USDT", "type": "spot",
                     "spot": True, "info": {}},
        "BTC/USDT:USDT": {"symbol": "BTC/USDT:USDT", "id": "BTCUSDT", "base": "BTC", "quote": "USDT",
                          "settle": "USDT", "type": "swap", "swap": True, "linear": True, "contract": True,
                          "contractSize": 0.01, "info": {}},
        "BTC/USD:BTC": {"symbol": "BTC/USD:BTC", "id": "BTCUSD", "base": "BTC", "quote": "USD", "settle": "BTC",
                        "type": "swap", "swap": True, "inverse": True, "contract": True, "contractSize": 100.0,
                        "info": {}},
    }  # fmt: skip
    registry.add_markets("okx", markets, list(markets))
    return [registry.get("okx", s) for s in markets]


def test_tickers_taken_together_are_the_records_of_one_ticker_at_a_time() -> None:
    tickers = [
        _ticker(1_800_000_000_000),
        _ticker(None),  # stamped with its receive time
        _ticker(1_800_000_000_500.7, indexPrice=99.0, markPrice=None, info={"markPx": "100.2"}),
        _ticker(1_800_000_001_000, bid=None, bidVolume=None, info={"oraclePx": 98.5}),
        _ticker(1_800_000_002_000, last=7, askVolume=None),
    ]
    recv = [1_800_000_000_100 + i for i in range(len(tickers))]
    values = plain_tickers(tickers)
    assert values is not None
    for instrument in _instruments():
        one_by_one = [normalize.ticker_to_record(t, instrument, r) for t, r in zip(tickers, recv, strict=True)]
        want = np.concatenate(one_by_one)
        got = np.array(normalize.ticker_rows(tickers, values, instrument, recv), dtype=schema.TICKERS)
        assert got.tobytes() == want.tobytes(), instrument.symbol


def test_random_tickers_the_batch_pass_vouches_for_are_what_screen_keeps_and_ticker_to_record_makes() -> None:
    """Random tickers (ints, None, NaN, bools, strings, huge numbers, times near int64's end, the info fallback):
    where `plain_tickers` vouches for a batch, `screen` keeps every ticker whole and `ticker_rows` gives
    `ticker_to_record`'s bytes, on a spot, a linear and an inverse instrument."""
    rng = np.random.default_rng(21)
    odd = [None, 0, -1.0, float("nan"), float("inf"), True, "1.5", 2**70, 10**400, 7, 3.25]
    vouched = declined = 0
    for _ in range(400):
        tickers = []
        for _ in range(int(rng.integers(1, 4))):
            ticker = _ticker(int(rng.integers(1, 2**41)) if rng.random() < 0.9 else None)
            for key in ("bid", "ask", "last", "markPrice", "indexPrice", "bidVolume", "askVolume", "timestamp"):
                if rng.random() < 0.08:
                    ticker[key] = odd[int(rng.integers(0, len(odd)))]
            if rng.random() < 0.05:
                ticker["timestamp"] = rng.choice([2**63 - 1, 2.0**63, -(2**62), 2**62 + 1])
            if rng.random() < 0.2:
                ticker["info"] = {"markPx": "100.3", "oraclePx": 99.9}
            tickers.append(ticker)
        values = plain_tickers(tickers)
        if values is None:
            declined += 1
            continue
        vouched += 1
        for ticker in tickers:
            kept, events = Validator().screen("tickers", [ticker], 1, 1_800_000_000_000)
            assert kept == [ticker] and not len(events), ticker
        recv = [1_800_000_000_000 + i for i in range(len(tickers))]
        for instrument in _instruments():
            one_by_one = [normalize.ticker_to_record(t, instrument, r) for t, r in zip(tickers, recv, strict=True)]
            want = np.concatenate(one_by_one)
            got = np.array(normalize.ticker_rows(tickers, values, instrument, recv), dtype=schema.TICKERS)
            assert got.tobytes() == want.tobytes(), (instrument.symbol, tickers)
    assert vouched > 100 and declined > 100


def test_random_trades_the_batch_pass_vouches_for_are_what_screen_keeps_and_trades_to_records_makes() -> None:
    """Random trades (uuid, digit, int, huge, empty and missing ids; sides bought, sold, unknown, unhashable;
    costs as numbers, strings, None; odd times, prices and amounts): where `plain_trade_values` vouches for a
    batch, `screen` keeps every trade whole and `trade_rows` gives `trades_to_records`' bytes, on a spot, a
    linear and an inverse instrument."""
    rng = np.random.default_rng(34)
    ids = ["9afd1288-b444-53f8-8e40-c2f99368ad22", "2913537567", 77, None, "", str(2**64), " 12"]
    sides: list[Any] = ["buy", "sell", None, "other", ["buy"]]
    costs: list[Any] = [260.5, 3, None, "12.5", float("nan")]
    odd: list[Any] = [None, 0, -1.0, float("nan"), float("inf"), True, "1.5", 2**70, 7]
    vouched = declined = 0
    for _ in range(400):
        trades = []
        for _ in range(int(rng.integers(1, 5))):
            pick = [int(rng.integers(0, len(choices))) for choices in (ids, sides, costs)]
            trade = {"id": ids[pick[0]], "timestamp": int(rng.integers(1, 2**41)), "price": float(rng.uniform(1, 100)),
                     "amount": float(rng.uniform(0.1, 5)), "side": sides[pick[1]], "cost": costs[pick[2]]}  # fmt: skip
            for key in ("price", "amount", "timestamp"):
                if rng.random() < 0.07:
                    trade[key] = odd[int(rng.integers(0, len(odd)))]
            if rng.random() < 0.05:
                trade["timestamp"] = rng.choice([2**63 - 1, 2.0**62 + 0.5, 1_800_000_000_000.9])
            if rng.random() < 0.02:
                del trade["price"]
            trades.append(trade)
        values = staging.validation.plain_trade_values(trades)
        if values is None:
            declined += 1
            continue
        vouched += 1
        kept, events = Validator().screen("trades", trades, 1, 1_800_000_000_000)
        assert kept == trades and not len(events), trades
        recv = [1_800_000_000_000 + i for i in range(len(trades))]
        for instrument in _instruments():
            want = normalize.trades_to_records(trades, instrument, np.array(recv, dtype=np.int64))
            got = np.array(normalize.trade_rows(trades, values, instrument, recv), dtype=schema.TRADES)
            assert got.tobytes() == want.tobytes(), (instrument.symbol, trades)
    assert vouched > 100 and declined > 100


@pytest.mark.parametrize(
    "bad",
    [{"bid": float("nan")}, {"ask": 0.0}, {"askVolume": -1.0}, {"last": float("inf")}, {"bid": "100"},
     {"bid": True}, {"bid": None, "ask": None, "last": None, "markPrice": None}, {"timestamp": "1"}],
)  # fmt: skip
def test_a_ticker_the_column_pass_cannot_vouch_for_sends_the_batch_call_by_call(bad: dict[str, Any]) -> None:
    tickers = [_ticker(1_800_000_000_000), _ticker(1_800_000_000_100, **bad)]
    assert plain_tickers(tickers) is None
    assert plain_tickers([{"bid": 1.0}]) is None  # no `ask` key: `missing:ask`


def _per_call(
    validator: Validator, stream: str, records: np.ndarray, now: np.ndarray, calls: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    parts, events = [], []
    for call in np.unique(calls).tolist():
        mine = calls == call
        accepted, found = validator.check(stream, records[mine], int(now[mine][0]))
        parts.append(accepted)
        events.append(found)
    return np.concatenate(parts), np.concatenate(events)


def _state(validator: Validator) -> tuple[Any, ...]:
    seen = {key: (list(s._order), set(s._keys)) for key, s in validator._seen.items()}
    return dict(validator.counts), dict(validator._last_ts), dict(validator._latest), seen


def _tickers_records(rng: np.random.Generator, n: int, t0: int) -> tuple[np.ndarray, np.ndarray]:
    records = schema.empty("tickers", n)
    steps = rng.choice([-400, 0, 0, 250, 300, 1000], size=n)  # repeats and steps back among the usual ones
    records["ts_ms"] = t0 + np.cumsum(steps)
    records["recv_ts_ms"] = records["ts_ms"] + rng.integers(0, 50, n)
    records["instrument_id"] = 4
    records["bid"] = 100.0
    records["ask"] = 100.5
    records["last"] = 100.2
    return records, records["recv_ts_ms"].copy()


def _trades_records(rng: np.random.Generator, calls: np.ndarray, t0: int, first_id: int) -> np.ndarray:
    records = schema.empty("trades", len(calls))
    records["ts_ms"] = t0 + np.cumsum(rng.integers(0, 40, len(calls)))
    records["recv_ts_ms"] = records["ts_ms"] + 5
    records["instrument_id"] = 2
    records["trade_id"] = first_id + np.arange(len(calls))
    records["price"] = 50.0
    records["amount"] = 1.0
    return records


def test_check_calls_is_check_call_by_call_or_declines_and_changes_nothing() -> None:
    """Randomised sequences (fixed seed): tickers repeating and going back in time, trades new and in order, and
    batches a value check rejects (past, future, a bad price, a trade id seen or out of order), which the
    batch pass declines, leaving the validator as it was."""
    rng = np.random.default_rng(5)
    taken = declined = rows_taken = 0
    for round_ in range(60):
        slow, fast = Validator(max_past_ms=5_000), Validator(max_past_ms=5_000)
        by_rows = Validator(max_past_ms=5_000)  # trades: `check_trade_rows`, the few-trades pass
        t0 = 1_800_000_000_000 + round_
        history = []
        for batch in range(4):
            if round_ % 2:
                records, now = _tickers_records(rng, int(rng.integers(1, 30)), t0 + 8_000 * batch)
                calls = np.arange(len(records))
            else:
                calls = np.sort(rng.integers(0, 6, int(rng.integers(1, 40))))
                records = _trades_records(rng, calls, t0 + 3_000 * batch, 1000 * batch)
                now = records["recv_ts_ms"].copy()
                if rng.random() < 0.2:  # a trade id accepted before, or one out of time order
                    records["trade_id"][-1] = 1000 * max(batch - 1, 0)
                if rng.random() < 0.2 and len(records) > 1:
                    records["ts_ms"][-1] = records["ts_ms"][0] - 1
            if rng.random() < 0.15:  # a value the batch pass leaves to the per-call path
                field = "bid" if round_ % 2 else "price"
                records[field][int(rng.integers(0, len(records)))] = rng.choice([np.nan, -1.0, np.inf])
            if rng.random() < 0.1:
                records["ts_ms"][-1] = now[-1] + rng.choice([120_000, -20_000])
            if not round_ % 2:  # the rows pass takes the same trades whole or declines, changing nothing
                rows_before = _state(by_rows)
                if by_rows.check_trade_rows(records.tolist(), now.tolist(), calls.tolist()):
                    rows_taken += 1
                    rows_got: Any = (records, schema.empty("capture_events"))
                else:
                    assert _state(by_rows) == rows_before
                    rows_got = _per_call(by_rows, "trades", records, now, calls)
            before = _state(fast)
            got = fast.check_calls("tickers" if round_ % 2 else "trades", records, now, calls)
            if got is None:
                declined += 1
                assert _state(fast) == before
                got = _per_call(fast, "tickers" if round_ % 2 else "trades", records, now, calls)
            else:
                taken += 1
            want = _per_call(slow, "tickers" if round_ % 2 else "trades", records, now, calls)
            assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
            assert _state(fast) == _state(slow)
            if not round_ % 2:
                assert rows_got[0].tobytes() == want[0].tobytes() and rows_got[1].tobytes() == want[1].tobytes()
                assert _state(by_rows) == _state(slow)
            history.append(got)
        assert sum(len(a) for a, _ in history) > 0
    assert taken > 100 and declined > 20 and rows_taken > 50


def test_drain_gives_what_a_stopped_watch_had_staged() -> None:
    """A consumer that stops watching takes the staged calls with `drain` (the capture's watcher does at a stop)."""

    class Hangs(_Replayed):
        async def watch_ticker(self, symbol: str, *args: Any, **kwargs: Any) -> Any:
            if not self.recording[("tickers", symbol)]:
                await asyncio.Event().wait()
            return await super().watch_ticker(symbol)

    source, recording = _record_sim(calls=12)
    recording = {key: [s for s in steps if not isinstance(s[0], BaseException)] for key, steps in recording.items()}
    symbol = SIM_SYMBOLS[0]

    async def go(stage_records: int) -> tuple[np.ndarray, list[Any]]:
        exchange = Hangs(source, recording)
        registry = InstrumentRegistry()
        registry.add_markets("bybit", exchange.markets, list(SIM_SYMBOLS))
        feed = Feed(exchange, registry, stage_records=stage_records, stage_max_age_s=60)
        watched: list[np.ndarray] = []

        async def consume() -> None:
            async for batch in feed.watch("tickers", symbol):
                watched.append(batch.records)

        task = asyncio.ensure_future(consume())
        while recording[("tickers", symbol)] and len(exchange.recording[("tickers", symbol)]):
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return np.concatenate(watched), feed.drain()

    per_call, nothing = asyncio.run(go(0))
    watched, drained = asyncio.run(go(10_000))
    assert len(per_call) >= 8 and not nothing  # a ticker repeating the last one's time is dropped
    assert not len(watched) and len(drained) == 1 and drained[0].stream == "tickers"
    assert drained[0].records.tobytes() == per_call.tobytes()


def test_calls_staged_before_a_failure_come_in_the_batch_that_reports_it() -> None:
    """A consumer that stops between batches (the capture's watcher at a stop) gets both or neither."""
    source, recording = _record_sim(calls=8)
    symbol = SIM_SYMBOLS[0]
    steps = [s for s in recording[("tickers", symbol)] if not isinstance(s[0], BaseException)]
    recording = {("tickers", symbol): [*steps, (ccxt.NetworkError("drop"), steps[-1][1])]}

    async def go() -> list[Any]:
        registry = InstrumentRegistry()
        registry.add_markets("bybit", source.markets, list(SIM_SYMBOLS))
        feed = Feed(_Replayed(source, recording), registry, stage_records=10_000, stage_max_age_s=60)
        batches = []
        async for batch in feed.watch("tickers", symbol):
            batches.append(batch)
            if len(batches) == 2:
                break  # the CHANNEL event, then the first batch after it
        return batches

    _, first = asyncio.run(go())
    assert len(first.records) >= 6  # every staged ticker (a repeated time is dropped, with its event)
    assert first.events["kind"][-1] == int(EventKind.RECONNECT)


def _without_failures(recording: dict) -> dict:
    return {key: [step for step in steps if not isinstance(step[0], BaseException)] for key, steps in recording.items()}


def test_malformed_calls_are_quarantined_the_same_staged_as_call_by_call() -> None:
    # a time beyond int64 (ticker and trade), an empty ticker, a ticker that is not a structure: each named as
    # the per-call path names it, and the good calls staged with them land
    source, recording = _record_sim(calls=6)
    recording = _without_failures(recording)
    symbol = SIM_SYMBOLS[0]
    tickers = [step for step in recording[("tickers", symbol)] if not isinstance(step[0], BaseException)]
    trades = [step for step in recording[("trades", symbol)] if not isinstance(step[0], BaseException) and step[0]]
    far = {**tickers[1][0], "timestamp": 1e19}
    far_trades = [{**trades[1][0][0], "timestamp": 2**64}, *trades[1][0][1:]]
    bad = {
        **recording,
        ("tickers", symbol): [tickers[0], (far, tickers[1][1]), ({}, tickers[1][1]), (5, tickers[1][1]), *tickers[2:]],
        ("trades", symbol): [trades[0], (far_trades, trades[1][1]), *trades[2:]],
    }
    per_call = _replay_run(source, bad, 0)
    for stage_records in (2, 64):
        _assert_same(per_call, _replay_run(source, bad, stage_records))
    reasons = [r.decode() for r in np.concatenate(per_call[0]["capture_events"])["reason"]]
    assert reasons.count("ts:out_of_range") == 2
    assert "missing:bid" in reasons and "missing:structure" in reasons
    # every good ticker lands, before and after the bad ones: as in a run of the good calls alone
    good = _replay_run(source, {**recording, ("tickers", symbol): [tickers[0], *tickers[2:]]}, 0)
    assert np.concatenate(per_call[0]["tickers"]).tobytes() == np.concatenate(good[0]["tickers"]).tobytes()


@pytest.mark.parametrize("stage_records", [2, 64, 10_000])
def test_a_trade_the_batch_pass_cannot_convert_costs_only_its_own_call(stage_records: int) -> None:
    # a cost beyond float64 (an int ccxt could pass through) raises while the batch pass converts its trades
    # (clean calls otherwise: the batch pass takes them): the batch goes call by call, the call holding it is
    # quarantined, and every other call staged with it lands
    source, recording = _record_sim(calls=6, faults=FaultConfig())
    recording = _without_failures(recording)
    symbol = SIM_SYMBOLS[0]
    trades = [step for step in recording[("trades", symbol)] if not isinstance(step[0], BaseException) and step[0]]
    huge = [{**trades[1][0][0], "cost": 10**400}, *trades[1][0][1:]]
    bad = {**recording, ("trades", symbol): [trades[0], (huge, trades[1][1]), *trades[2:]]}
    out, feed = _replay_run(source, bad, stage_records)
    good = _replay_run(source, {**recording, ("trades", symbol): [trades[0], *trades[2:]]}, stage_records)
    assert np.concatenate(out["trades"]).tobytes() == np.concatenate(good[0]["trades"]).tobytes()
    reasons = [r.decode() for r in np.concatenate(out["capture_events"])["reason"]]
    assert reasons.count("error:OverflowError") == 1 and feed.counts["errors:OverflowError"] == 1


def test_a_staged_call_that_cannot_be_processed_is_quarantined_not_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    source, recording = _record_sim(calls=6)
    recording = _without_failures(recording)
    symbol = SIM_SYMBOLS[0]
    tickers = recording[("tickers", symbol)]
    poison = {**tickers[1][0], "info": "poison"}
    calls = {**recording, ("tickers", symbol): [tickers[0], (poison, tickers[1][1]), *tickers[2:]]}
    original = Feed._process

    def process(self: Feed, sub: Any, raw: Any, recv: int) -> Any:
        if isinstance(raw, dict) and raw.get("info") == "poison":
            raise RuntimeError("a fault in processing one call")
        return original(self, sub, raw, recv)

    monkeypatch.setattr(Feed, "_process", process)
    monkeypatch.setattr(staging.validation, "plain_tickers", lambda items: None)  # the batch goes call by call
    out, feed = _replay_run(source, calls, 64)
    good = _replay_run(source, {**recording, ("tickers", symbol): [tickers[0], *tickers[2:]]}, 64)
    assert np.concatenate(out["tickers"]).tobytes() == np.concatenate(good[0]["tickers"]).tobytes()  # the rest landed
    reasons = [r.decode() for r in np.concatenate(out["capture_events"])["reason"]]
    assert reasons.count("error:RuntimeError") == 1 and feed.counts["errors:RuntimeError"] == 1


def test_a_fatal_error_is_raised_at_once_and_drain_gives_what_was_staged_before_it() -> None:
    """A FATAL error (a wrong symbol, a credential) ends the watch before any further batch, so a consumer that
    stops at the first batch with records (the capture's watcher at a stop) still gets it raised; what was
    staged stays in the Feed and `drain` gives it, as the per-call path landed it before the error."""
    source, recording = _record_sim(calls=8)
    symbol = SIM_SYMBOLS[0]
    steps = _without_failures(recording)[("tickers", symbol)]
    fatal = {("tickers", symbol): [*steps, (ccxt.BadSymbol("delisted"), steps[-1][1])]}

    async def go(stage_records: int, stop_at_records: bool) -> tuple[list[Any], list[Any]]:
        registry = InstrumentRegistry()
        registry.add_markets("bybit", source.markets, list(SIM_SYMBOLS))
        feed = Feed(_Replayed(source, fatal), registry, stage_records=stage_records, stage_max_age_s=60)
        batches = []
        with pytest.raises(ccxt.BadSymbol):
            async for batch in feed.watch("tickers", symbol):
                batches.append(batch)
                if stop_at_records and len(batch.records):
                    break
        return batches, feed.drain()

    per_call, nothing = asyncio.run(go(0, stop_at_records=False))
    batches, drained = asyncio.run(go(10_000, stop_at_records=True))
    assert not nothing and not any(len(b.records) for b in batches)  # the CHANNEL event, then the error
    want = np.concatenate([b.records for b in per_call])
    assert len(want) >= 6 and len(drained) == 1 and drained[0].records.tobytes() == want.tobytes()
