"""The order_book stream through the Feed: sampling, the venue's sequence, bad books, units; from the
simulator and from the real bybit/okx recordings replayed through ccxt.pro (checked against books rebuilt
here from the raw frames with plain json)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pyarrow as pa
import pytest

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import FaultConfig
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.schema import EventKind
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sources.wire import create_wire_exchange

from .sim.common import sim
from .test_feed import T0, ScriptedExchange, _collect, _events, _records, _registry, _run


class BookExchange(ScriptedExchange):
    async def watch_order_book(self, symbol: str, limit: Any = None, params: Any = None) -> Any:
        return await self._next("watch_order_book")

    async def fetch_order_book(self, symbol: str, limit: Any = None, params: Any = None) -> Any:
        self.call_times.setdefault(f"fetch_order_book:{limit}", [])
        return await self._next("fetch_order_book")


def _book(ts: int, nonce: int | None = None, bid: float = 100.0, ask: float = 100.5, depth: int = 3) -> dict:
    bids = [[bid - i, 1.0 + i] for i in range(depth)]
    asks = [[ask + i, 2.0 + i] for i in range(depth)]
    return {"symbol": "BTC/USDT:USDT", "bids": bids, "asks": asks, "timestamp": ts, "nonce": nonce}


def _watch(ex: BookExchange, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, Feed]:
    ex.speed = 1.0  # the books' own times decide the sampling; the clock only bounds staleness
    feed = Feed(ex, _registry(ex), stale_timeout_s={}, **kwargs)
    batches = _run(_collect(feed, "order_book", "BTC/USDT:USDT"))
    return _records(batches), _events(batches), feed


def test_one_book_per_interval_is_kept_with_the_updates_seen_since_the_last() -> None:
    ex = BookExchange()
    times = [T0 + 100, T0 + 900, T0 + 1_000, T0 + 1_500, T0 + 2_400, T0 + 5_100]
    ex.scripts["watch_order_book"] = [_book(t, nonce=i + 1) for i, t in enumerate(times)]
    records, events, feed = _watch(ex, book_interval_s=1.0, book_levels=2)
    # the first update at or after each whole second: 100 (first), 1000, 2400, 5100
    assert records["ts_ms"].tolist() == [T0 + 100, T0 + 1_000, T0 + 2_400, T0 + 5_100]
    assert records["updates"].tolist() == [1, 2, 2, 1]
    assert records["nonce"].tolist() == [1, 3, 5, 6]
    assert records["bid_price"][0, :3].tolist()[:2] == [100.0, 99.0] and math.isnan(records["bid_price"][0, 2])
    assert records["ask_size"][0, :2].tolist() == [2.0, 3.0]
    assert feed.counts["order_book:sampled_out"] == 2
    assert not (events["kind"] == int(EventKind.GAP)).any()


def test_every_update_is_kept_at_interval_zero_and_levels_past_the_book_are_nan() -> None:
    ex = BookExchange()
    ex.scripts["watch_order_book"] = [_book(T0 + i, depth=2) for i in range(1, 5)]
    records, _, _ = _watch(ex, book_interval_s=0, book_levels=schema.BOOK_LEVELS)
    assert len(records) == 4 and records["updates"].tolist() == [1, 1, 1, 1]
    assert records["nonce"].tolist() == [-1] * 4  # the venue gave none
    assert np.isnan(records["bid_price"][:, 2:]).all() and not np.isnan(records["bid_price"][:, :2]).any()


def test_a_broken_sequence_and_a_nonce_that_goes_back_are_gaps() -> None:
    ex = BookExchange()
    ex.scripts["watch_order_book"] = [
        _book(T0 + 1_000, nonce=10),
        ccxt.InvalidNonce("bybit watchOrderBook received invalid nonce"),
        _book(T0 + 3_000, nonce=12),
        _book(T0 + 4_000, nonce=2),  # the venue restarted its sequence (a new snapshot)
    ]
    records, events, _ = _watch(ex, book_interval_s=0)
    assert records["ts_ms"].tolist() == [T0 + 1_000, T0 + 3_000, T0 + 4_000]
    gaps = events[events["kind"] == int(EventKind.GAP)]
    reasons = [r.decode() for r in gaps["reason"]]
    assert reasons == ["sequence", "sequence:reset"]
    assert (int(gaps["start_ms"][0]), int(gaps["end_ms"][0])) == (T0 + 1_000, T0 + 3_000)
    reconnects = events[events["kind"] == int(EventKind.RECONNECT)]
    assert [r.decode() for r in reconnects["reason"]] == ["sequence:InvalidNonce"]


def test_a_failed_repair_is_tried_once_counted_and_the_gap_closes_on_the_next_streamed_book() -> None:
    """The venue's REST book is down too (a network error): one attempt, no retries holding the stream back,
    `order_book:repair_failed` counted, and the GAP ends at the next websocket book as without a repair."""
    ex = BookExchange("binanceusdm", has={"fetchOrderBook": True})
    ex.scripts["watch_order_book"] = [
        _book(T0 + 1_000, nonce=10),
        ccxt.NetworkError("connection lost"),
        _book(T0 + 3_000, nonce=12),
    ]
    ex.scripts["fetch_order_book"] = [ccxt.NetworkError("still down"), _book(T0 + 2_000, nonce=11)]
    records, events, feed = _watch(ex, book_interval_s=0, book_levels=7)
    assert records["ts_ms"].tolist() == [T0 + 1_000, T0 + 3_000] and set(records["from_rest"].tolist()) == {0}
    assert ex.calls["fetch_order_book"] == 1 and "fetch_order_book:10" in ex.call_times  # binance's depth >= 7
    assert feed.counts["order_book:repair_failed"] == 1
    gaps = events[events["kind"] == int(EventKind.GAP)]
    assert [
        (r.decode(), int(s), int(e)) for r, s, e in zip(gaps["reason"], gaps["start_ms"], gaps["end_ms"], strict=True)
    ] == [("reconnect", T0 + 1_000, T0 + 3_000)]


def _gaps(events: np.ndarray) -> list[tuple[str, int, int]]:
    gaps = events[events["kind"] == int(EventKind.GAP)]
    spans = zip(gaps["reason"], gaps["start_ms"], gaps["end_ms"], strict=True)
    return [(r.decode(), int(s), int(e)) for r, s, e in spans]


def test_a_repair_from_a_cache_behind_the_stream_is_dropped_and_the_gap_closes_on_the_next_streamed_book() -> None:
    """The venue answers the repair from a cache that lags its websocket: the book of the last streamed time
    with a lower nonce (12 streamed, 11 served). It predates the lost update: dropped (DROPPED
    `repair:not_newer`, counted), not a venue restart (no `sequence:reset`), not a duplicate, and the websocket's
    nonce stays 12, so the next streamed book (13) continues the sequence and closes the GAP."""
    ex = BookExchange("binanceusdm", has={"fetchOrderBook": True})
    ex.scripts["watch_order_book"] = [
        _book(T0 + 1_000, nonce=10),
        _book(T0 + 2_000, nonce=12),
        ccxt.InvalidNonce("binanceusdm watchOrderBook received invalid nonce"),
        _book(T0 + 3_000, nonce=13),
    ]
    ex.scripts["fetch_order_book"] = [_book(T0 + 2_000, nonce=11, bid=99.0)]
    records, events, feed = _watch(ex, book_interval_s=0)
    assert ex.calls["fetch_order_book"] == 1
    assert records["ts_ms"].tolist() == [T0 + 1_000, T0 + 2_000, T0 + 3_000]
    assert records["nonce"].tolist() == [10, 12, 13] and set(records["from_rest"].tolist()) == {0}
    assert _gaps(events) == [("sequence", T0 + 2_000, T0 + 3_000)]
    kinds = events["kind"].tolist()
    assert int(EventKind.DUPLICATE) not in kinds and int(EventKind.QUARANTINED) not in kinds
    dropped = events[events["kind"] == int(EventKind.DROPPED)]
    assert [(r.decode(), int(s)) for r, s in zip(dropped["reason"], dropped["start_ms"], strict=True)] == [
        ("repair:not_newer", T0 + 2_000)
    ]
    assert feed.counts["order_book:repair_not_newer"] == 1 and feed.counts["order_book:sequence_reset"] == 0
    assert feed.counts["order_book:rest"] == 0
    books = feed._subs[("order_book", "BTC/USDT:USDT")].books  # noqa: SLF001 - the websocket's sequence
    assert books is not None and books.last_nonce == 13 and books.last_streamed_ms == T0 + 3_000


def test_a_repair_newer_than_the_last_streamed_book_lands_and_closes_the_gap() -> None:
    """A snapshot newer than the last streamed book repairs the gap at its time (`from_rest` = 1); its nonce is
    the REST endpoint's, not the websocket's: a lower one (the venue restarted) is no `sequence:reset` by
    itself, the next streamed book below the websocket's last nonce is."""
    ex = BookExchange("binanceusdm", has={"fetchOrderBook": True})
    ex.scripts["watch_order_book"] = [
        _book(T0 + 1_000, nonce=10),
        ccxt.InvalidNonce("binanceusdm watchOrderBook received invalid nonce"),
        _book(T0 + 3_000, nonce=11),
        ccxt.InvalidNonce("binanceusdm watchOrderBook received invalid nonce"),
        _book(T0 + 5_000, nonce=3),
    ]
    ex.scripts["fetch_order_book"] = [_book(T0 + 2_000, nonce=20), _book(T0 + 4_000, nonce=2)]
    records, events, feed = _watch(ex, book_interval_s=0)
    assert records["ts_ms"].tolist() == [T0 + 1_000, T0 + 2_000, T0 + 3_000, T0 + 4_000, T0 + 5_000]
    assert records["from_rest"].tolist() == [0, 1, 0, 1, 0] and records["updates"].tolist() == [1, 1, 1, 1, 1]
    assert records["nonce"].tolist() == [10, 20, 11, 2, 3]
    assert _gaps(events) == [
        ("sequence", T0 + 1_000, T0 + 2_000),
        ("sequence", T0 + 3_000, T0 + 4_000),
        ("sequence:reset", T0 + 5_000, T0 + 5_000),
    ]
    assert feed.counts["order_book:rest"] == 2 and feed.counts["order_book:sequence_reset"] == 1
    assert feed.counts["order_book:repair_not_newer"] == 0
    assert not (events["kind"] == int(EventKind.DROPPED)).any()


def test_crossed_and_bad_books_are_quarantined_and_the_stream_goes_on() -> None:
    ex = BookExchange()
    bad_size = _book(T0 + 2_000)
    bad_size["asks"][1][1] = -1.0
    ex.scripts["watch_order_book"] = [
        _book(T0 + 1_000, bid=101.0, ask=100.5),  # crossed
        bad_size,
        {"symbol": "BTC/USDT:USDT", "timestamp": T0 + 2_500},  # no sides at all
        _book(T0 + 3_000),
    ]
    records, events, _ = _watch(ex, book_interval_s=0)
    assert records["ts_ms"].tolist() == [T0 + 3_000]
    quarantined = events[events["kind"] == int(EventKind.QUARANTINED)]
    assert sorted(r.decode() for r in quarantined["reason"]) == ["book:ask_size", "book:crossed", "missing:book"]


def test_contract_books_land_in_base_units() -> None:
    ex = BookExchange()
    ex.markets["BTC/USDT:USDT"]["contractSize"] = 0.01
    ex.scripts["watch_order_book"] = [_book(T0 + 1_000)]
    records, _, _ = _watch(ex, book_interval_s=0)
    assert records["bid_size"][0, :3].tolist() == pytest.approx([0.01, 0.02, 0.03])


def test_the_simulator_book_lands_as_served_sampled_on_its_own_seconds() -> None:
    async def go() -> tuple[list[np.ndarray], SimExchange]:
        ex = SimExchange("okx", sim(speed=200.0), symbols=["BTC/USDT:USDT"])
        await ex.load_markets()
        registry = InstrumentRegistry()
        registry.add_markets("okx", ex.markets, list(ex.markets))
        feed = Feed(ex, registry, book_interval_s=5.0, book_levels=10)
        out: list[np.ndarray] = []
        async for batch in feed.watch("order_book", "BTC/USDT:USDT"):
            out.extend(batch.records)
            if len(out) >= 3:
                break
        return out, ex

    records, ex = asyncio.run(asyncio.wait_for(go(), timeout=60))
    m = ex.market("BTC/USDT:USDT")
    contract = m["contractSize"]
    assert contract == 0.01  # okx swaps count contracts: the record holds base units
    times = [int(r["ts_ms"]) for r in records]
    buckets = [t // 5_000 for t in times]  # one book per 5-second bucket of the book's own time
    assert buckets == sorted(set(buckets))
    for r in records:
        book = ex.book.structure(ex._m["BTC/USDT:USDT"], int(r["ts_ms"]), 10)  # noqa: SLF001 - the served book, independently asked
        assert int(r["nonce"]) == int(r["ts_ms"]) // 1000 == book["nonce"]
        assert r["bid_price"][:10].tolist() == [p for p, _ in book["bids"]]
        assert r["ask_size"][:10].tolist() == pytest.approx([a * contract for _, a in book["asks"]])
        assert np.isnan(r["bid_price"][10:]).all()


def _sim_books(
    faults: FaultConfig, wanted: int, speed: float = 100.0, **feed_kwargs: Any
) -> tuple[np.ndarray, np.ndarray, SimExchange]:
    """The order_book stream of the simulated okx BTC perp through the Feed until `wanted` REST rows landed."""

    async def go() -> tuple[list[np.ndarray], list[np.ndarray], SimExchange]:
        ex = SimExchange("okx", sim(speed=speed, faults=faults), symbols=["BTC/USDT:USDT"])
        await ex.load_markets()
        registry = InstrumentRegistry()
        registry.add_markets("okx", ex.markets, list(ex.markets))
        feed = Feed(ex, registry, book_levels=10, **feed_kwargs)
        records: list[np.ndarray] = []
        events: list[np.ndarray] = []
        async for batch in feed.watch("order_book", "BTC/USDT:USDT"):
            records.extend(batch.records)
            events.extend(np.atleast_1d(batch.events))
            if sum(int(r["from_rest"]) for r in records) >= wanted:
                break
        return records, events, ex

    records, events, ex = asyncio.run(asyncio.wait_for(go(), timeout=60))
    return np.array(records, dtype=schema.ORDER_BOOK), np.array(events, dtype=schema.CAPTURE_EVENTS), ex


def _as_served(ex: SimExchange, r: np.ndarray) -> None:
    """A landed book equals the simulator's book at its time, asked again here (okx counts 0.01 BTC contracts)."""
    book = ex.book.structure(ex._m["BTC/USDT:USDT"], int(r["ts_ms"]), 10)  # noqa: SLF001 - the served book
    assert int(r["nonce"]) == book["nonce"] and int(r["ts_ms"]) == book["timestamp"]
    assert r["bid_price"][:10].tolist() == [p for p, _ in book["bids"]]
    assert r["ask_price"][:10].tolist() == [p for p, _ in book["asks"]]
    assert r["bid_size"][:10].tolist() == pytest.approx([q * 0.01 for _, q in book["bids"]], rel=1e-12)


def test_a_broken_sim_book_sequence_is_repaired_at_once_by_a_rest_snapshot() -> None:
    """Every 30 market seconds the simulated book's sequence breaks (ccxt.InvalidNonce): the Feed counts a
    RECONNECT and fetches one `fetch_order_book` snapshot at once, lands it (`from_rest` = 1) equal to the
    simulator's book at its time, and closes the GAP (reason sequence) there; the websocket book resumes."""
    records, events, ex = _sim_books(FaultConfig(sequence_every_s=30.0), 3, book_interval_s=5.0)
    rest = records[records["from_rest"] == 1]
    streamed = records[records["from_rest"] == 0]
    assert len(rest) == 3 and len(streamed) >= 6
    for r in records:
        _as_served(ex, r)
    assert rest["updates"].tolist() == [1, 1, 1]
    reconnects = events[events["kind"] == int(EventKind.RECONNECT)]
    gaps = events[events["kind"] == int(EventKind.GAP)]
    assert [r.decode() for r in reconnects["reason"]] == ["sequence:InvalidNonce"] * 3
    assert [r.decode() for r in gaps["reason"]] == ["sequence"] * 3
    assert ex.faults_injected[("sequence", "order_book", "BTC/USDT:USDT")] == 3
    for gap, snapshot in zip(gaps, rest, strict=True):
        last_streamed = streamed["ts_ms"][streamed["ts_ms"] <= gap["start_ms"]].max()
        assert gap["start_ms"] == last_streamed and gap["end_ms"] == snapshot["ts_ms"] > gap["start_ms"]
    assert (streamed["ts_ms"] > rest["ts_ms"][1]).any()  # the websocket book went on after the repairs


def test_books_are_polled_over_rest_at_the_configured_interval() -> None:
    """`book_rest_interval_s`: `fetch_order_book` every 10 market seconds instead of a websocket book; each
    row a REST snapshot equal to the simulator's book at its time, never closer than the interval."""
    # 20x: a market second late is 50 ms of wall (at 100x, 10 ms: a loaded machine's scheduling put the median
    # step past 11 s)
    records, events, ex = _sim_books(FaultConfig(), 6, speed=20.0, book_rest_interval_s=10.0)
    assert len(records) == 6 and set(records["from_rest"].tolist()) == {1}
    for r in records:
        _as_served(ex, r)
    steps = np.diff(records["ts_ms"])
    assert (steps >= 10_000).all() and np.median(steps) <= 11_000, steps
    channel = events[events["kind"] == int(EventKind.CHANNEL)]
    assert [r.decode() for r in channel["reason"]] == ["order_book:fetch_order_book"]
    assert ex.subscriptions.emitted[("order_book", "BTC/USDT:USDT")] == 0  # no websocket book was asked for


# -- the real recordings --------------------------------------------------------------------------------------
def _zst_lines(path: Path) -> list[dict[str, Any]]:
    with pa.input_stream(str(path), compression="zstd") as stream:
        return [json.loads(line) for line in stream.read().decode().splitlines()]


def bybit_books(path: Path, conn: str, venue_id: str) -> list[tuple[int, list, list]]:
    """Every state of bybit's `orderbook.200.<id>` on one connection: (ts, bids best first, asks best first),
    snapshots replacing and deltas merging (size 0 deletes a level), as bybit documents them."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    out = []
    for row in _zst_lines(path):
        if row.get("t") != "recv" or row.get("conn") != conn or f'"orderbook.200.{venue_id}"' not in row["data"]:
            continue
        msg = json.loads(row["data"])
        if msg["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, updates in ((bids, msg["data"]["b"]), (asks, msg["data"]["a"])):
            for price, size in updates:
                if float(size) == 0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = float(size)
        out.append((msg["ts"], sorted(bids.items(), reverse=True), sorted(asks.items())))
    return out


def sampled(states: list[tuple[int, list, list]], interval_ms: int) -> list[tuple[int, int, list, list]]:
    """The Feed's sampling, restated: the first state at or after each multiple of the interval, with the
    number of states since the previous kept one."""
    kept, next_ms, seen = [], 0, 0
    for ts, bids, asks in states:
        seen += 1
        if ts >= next_ms:
            kept.append((ts, seen, bids, asks))
            seen, next_ms = 0, (ts // interval_ms + 1) * interval_ms
    return kept


def _wire_feed(path: Path, exchange_id: str, symbols: list[str], interval_s: float, levels: int) -> tuple[dict, dict]:
    """The order_book stream of each symbol through the Feed over a wire replay: (records, events) by symbol."""
    ex = create_wire_exchange(exchange_id, str(path))
    registry = InstrumentRegistry()
    registry.add_markets(exchange_id, ex.markets, list(ex.markets))
    feed = Feed(ex, registry, book_interval_s=interval_s, book_levels=levels)
    out: dict[str, list[np.ndarray]] = {s: [] for s in symbols}
    events: dict[str, list[np.ndarray]] = {s: [] for s in symbols}

    async def drain(symbol: str) -> None:
        async for batch in feed.watch("order_book", symbol):
            out[symbol].extend(batch.records)
            events[symbol].extend(batch.events)

    async def run() -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(drain(s) for s in symbols)), timeout=120)
        finally:
            await ex.close()

    asyncio.run(run())
    return out, events


def _wire_books(path: Path, exchange_id: str, symbols: list[str], interval_s: float, levels: int) -> dict:
    return _wire_feed(path, exchange_id, symbols, interval_s, levels)[0]


def test_bybit_recorded_books_land_as_the_raw_frames_build_them(fixtures_dir: Path) -> None:
    path = fixtures_dir / "ws_recordings" / "BYBIT.jsonl.zst"
    symbols = {"BTC/USDT:USDT": ("BYBIT.ws.2", "BTCUSDT"), "ETH/USDT": ("BYBIT.ws.3", "ETHUSDT")}
    got = _wire_books(path, "bybit", list(symbols), 5.0, 20)
    for symbol, (conn, venue_id) in symbols.items():
        want = sampled(bybit_books(path, conn, venue_id), 5_000)
        rows = got[symbol]
        assert len(rows) == len(want) >= 8, symbol
        for r, (ts, updates, bids, asks) in zip(rows, want, strict=True):
            assert (int(r["ts_ms"]), int(r["updates"])) == (ts, updates)
            assert r["bid_price"].tolist() == [p for p, _ in bids[:20]]
            assert r["bid_size"].tolist() == [q for _, q in bids[:20]]
            assert r["ask_price"].tolist() == [p for p, _ in asks[:20]]
            assert r["ask_size"].tolist() == [q for _, q in asks[:20]]
            assert r["bid_price"][0] < r["ask_price"][0]


def test_okx_recorded_books_of_an_inverse_swap_land_in_base_units(fixtures_dir: Path) -> None:
    """okx `books` (snapshot then updates, a size-0 level deleted); UNI-USD-SWAP counts 10-USD contracts."""
    path = fixtures_dir / "ws_recordings" / "OKX.jsonl.zst"
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    states = []
    for row in _zst_lines(path):
        if row.get("t") != "recv" or '"books"' not in row["data"] or "UNI-USD-SWAP" not in row["data"]:
            continue
        msg = json.loads(row["data"])
        if "data" not in msg:
            continue
        for d in msg["data"]:
            if msg.get("action") == "snapshot":
                bids.clear()
                asks.clear()
            for side, updates in ((bids, d["bids"]), (asks, d["asks"])):
                for level in updates:
                    price, size = float(level[0]), float(level[1])
                    side.pop(price, None) if size == 0 else side.__setitem__(price, size)
            states.append((int(d["ts"]), sorted(bids.items(), reverse=True), sorted(asks.items())))
    want = sampled(states, 1_000)
    rows = _wire_books(path, "okx", ["UNI/USD:UNI"], 1.0, 5)["UNI/USD:UNI"]
    assert len(rows) == len(want) >= 5
    for r, (ts, updates, b, a) in zip(rows, want, strict=True):
        assert (int(r["ts_ms"]), int(r["updates"])) == (ts, updates)
        assert r["bid_price"][:5].tolist() == [p for p, _ in b[:5]]
        assert r["bid_size"][:5].tolist() == pytest.approx([q * 10 / p for p, q in b[:5]], rel=1e-12)
        assert r["ask_size"][:5].tolist() == pytest.approx([q * 10 / p for p, q in a[:5]], rel=1e-12)


# -- binance futures: a REST snapshot, then `<symbol>@depth@100ms` diffs chained by U/u/pu ---------------------
BINANCE_BASES = ("SUSHI", "AKRO", "KEEP", "CTK")


def binance_books(rows: list[dict[str, Any]], venue_id: str) -> list[tuple[int, int, list, list]]:
    """Every state of a binance futures book as binance documents building it: the recorded REST snapshot
    (`lastUpdateId` L), diffs with u < L dropped, the first kept one spanning L (U <= L <= u), each next one's
    `pu` the previous `u`; a size of 0 deletes the level. (time, update id, bids best first, asks best first)."""
    url = next(r for r in rows if r.get("t") == "http" and f"depth?symbol={venue_id}&" in r["url"])
    snapshot = json.loads(url["data"])
    last = snapshot["lastUpdateId"]
    bids = {float(p): float(q) for p, q in snapshot["bids"]}
    asks = {float(p): float(q) for p, q in snapshot["asks"]}
    states = [(snapshot["T"], last, sorted(bids.items(), reverse=True), sorted(asks.items()))]
    started = False
    for row in rows:
        if row.get("t") != "recv" or f'"{venue_id.lower()}@depth@100ms"' not in row["data"]:
            continue
        diff = json.loads(row["data"])["data"]
        if diff["u"] < snapshot["lastUpdateId"]:
            continue
        assert (diff["U"] <= last <= diff["u"]) if not started else diff["pu"] == last, "the recording is unbroken"
        started = True
        for side, levels in ((bids, diff["b"]), (asks, diff["a"])):
            for price, size in levels:
                side.pop(float(price), None) if float(size) == 0 else side.__setitem__(float(price), float(size))
        last = diff["u"]
        states.append((diff["E"], last, sorted(bids.items(), reverse=True), sorted(asks.items())))
    return states


def _assert_books(rows: list[np.ndarray], want: list[tuple[int, int, list, list]], where: str) -> None:
    assert len(rows) == len(want), f"{where}: {len(rows)} books landed, {len(want)} built"
    for r, (ts, nonce, bids, asks) in zip(rows, want, strict=True):
        assert (int(r["ts_ms"]), int(r["nonce"]), int(r["from_rest"])) == (ts, nonce, 0), where
        assert r["bid_price"].tolist() == [p for p, _ in bids[:20]], where
        assert r["bid_size"].tolist() == [q for _, q in bids[:20]], where
        assert r["ask_price"].tolist() == [p for p, _ in asks[:20]], where
        assert r["ask_size"].tolist() == [q for _, q in asks[:20]], where


def test_binance_futures_books_are_built_by_ccxt_from_the_recorded_snapshot_and_diffs(fixtures_dir: Path) -> None:
    """ccxt.pro's binance class subscribes `@depth@100ms`, is answered its subscription as binance would, fetches
    `fapi/v1/depth?limit=1000` (served from the session's recorded response) and merges the diffs with its own
    U/u/pu checks: every book the Feed keeps equals the book built here from the same records."""
    path = fixtures_dir / "ws_recordings" / "BINANCE_FUTURES.jsonl.zst"
    rows = _zst_lines(path)
    symbols = [f"{b}/USDT:USDT" for b in BINANCE_BASES]
    got, events = _wire_feed(path, "binance", symbols, 0, 20)
    for base, symbol in zip(BINANCE_BASES, symbols, strict=True):
        want = binance_books(rows, f"{base}USDT")
        assert len(want) >= 100, symbol  # 135-253 states per symbol in 30 s
        _assert_books(got[symbol], want, symbol)
        kinds = {int(k) for e in events[symbol] for k in np.atleast_1d(e["kind"])}
        assert int(EventKind.GAP) not in kinds and int(EventKind.RECONNECT) not in kinds, symbol


def test_a_dropped_binance_diff_is_a_sequence_gap_and_the_other_books_go_on(fixtures_dir: Path, tmp_path: Path) -> None:
    """One SUSHI diff frame removed from a copy of the session: ccxt's `pu` check raises, the Feed counts a
    RECONNECT (sequence:ChecksumError) and a GAP (reason sequence) from the last good book, nothing crashes.
    ccxt then resubscribes and asks for a new snapshot, which the recording does not hold (its one snapshot
    was used): the SUSHI stream ends there with its gap closed at the end of the data; the others are whole."""
    path = fixtures_dir / "ws_recordings" / "BINANCE_FUTURES.jsonl.zst"
    rows = _zst_lines(path)
    sushi = [i for i, r in enumerate(rows) if r.get("t") == "recv" and '"sushiusdt@depth@100ms"' in r["data"]]
    dropped = sushi[100]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i != dropped))
    symbols = [f"{b}/USDT:USDT" for b in BINANCE_BASES]
    got, events = _wire_feed(broken, "binance", symbols, 0, 20)
    for base, symbol in zip(BINANCE_BASES[1:], symbols[1:], strict=True):
        _assert_books(got[symbol], binance_books(rows, f"{base}USDT"), symbol)
    lost_u = json.loads(rows[dropped]["data"])["data"]["u"]
    before = [w for w in binance_books(rows, "SUSHIUSDT") if w[1] < lost_u]
    _assert_books(got["SUSHI/USDT:USDT"], before, "SUSHI before the break")
    sushi_events = np.concatenate([np.atleast_1d(e) for e in events["SUSHI/USDT:USDT"]])
    gaps = sushi_events[sushi_events["kind"] == int(EventKind.GAP)]
    reconnects = sushi_events[sushi_events["kind"] == int(EventKind.RECONNECT)]
    assert [r.decode() for r in reconnects["reason"]] == ["sequence:ChecksumError"]
    assert [r.decode() for r in gaps["reason"]] == ["sequence"]
    assert int(gaps["start_ms"][0]) == before[-1][0] < int(gaps["end_ms"][0])
