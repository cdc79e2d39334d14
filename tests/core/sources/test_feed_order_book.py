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


def _wire_books(path: Path, exchange_id: str, symbols: list[str], interval_s: float, levels: int) -> dict:
    ex = create_wire_exchange(exchange_id, str(path))
    registry = InstrumentRegistry()
    registry.add_markets(exchange_id, ex.markets, list(ex.markets))
    feed = Feed(ex, registry, book_interval_s=interval_s, book_levels=levels)
    out: dict[str, list[np.ndarray]] = {s: [] for s in symbols}

    async def drain(symbol: str) -> None:
        async for batch in feed.watch("order_book", symbol):
            out[symbol].extend(batch.records)

    async def run() -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(drain(s) for s in symbols)), timeout=120)
        finally:
            await ex.close()

    asyncio.run(run())
    return out


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
