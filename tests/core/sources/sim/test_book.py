"""The simulated L2 book: its best level is the ticker's, depth thins and gaps widen with distance, hot regimes
widen the spread, and it is the same whenever it is asked for."""

from __future__ import annotations

import asyncio

import numpy as np

from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sources.sim.book import MAX_LEVELS
from fundarb_dagster.core.units import DAY_MS, HOUR_MS

from .common import START, START_MS, run, sim


def pinned(venue: str, at_ms: int = START_MS + 3 * HOUR_MS) -> SimExchange:
    ex = SimExchange(venue, SimConfig(seed=7, start=START, now=_iso(at_ms)))
    run(ex.load_markets())
    return ex


def _iso(ms: int) -> str:
    return np.datetime_as_string(np.datetime64(ms, "ms"), unit="ms") + "Z"


def test_book_top_is_the_ticker_and_levels_are_ordered_on_the_tick_grid() -> None:
    ex = pinned("bybit")
    for symbol in ("BTC/USDT:USDT", "ETH/USDT", "DOGE/USDT:USDT"):
        book = run(ex.fetch_order_book(symbol))
        ticker = run(ex.fetch_ticker(symbol))
        assert (book["bids"][0][0], book["asks"][0][0]) == (ticker["bid"], ticker["ask"])
        assert (book["bids"][0][1], book["asks"][0][1]) == (ticker["bidVolume"], ticker["askVolume"])
        bids, asks = np.array(book["bids"]), np.array(book["asks"])
        assert len(bids) == len(asks) == MAX_LEVELS
        assert (np.diff(bids[:, 0]) < 0).all() and (np.diff(asks[:, 0]) > 0).all() and bids[0, 0] < asks[0, 0]
        tick = ex.markets[symbol]["precision"]["price"]
        assert np.allclose(np.round(asks[:, 0] / tick), asks[:, 0] / tick)
        assert book["timestamp"] == ex.milliseconds() // 1000 * 1000 and book["nonce"] == ex.milliseconds() // 1000
        assert set(book) == {"symbol", "bids", "asks", "timestamp", "datetime", "nonce"}
    assert len(run(ex.fetch_order_book("BTC/USDT:USDT", 5))["asks"]) == 5


def test_depth_thins_and_gaps_widen_with_distance_from_the_mid() -> None:
    ex = pinned("binance")
    m = ex._m["ETH/USDT:USDT"]
    sizes, gaps = [], []
    for k in range(200):
        bids, asks = ex.book.levels(m, START_MS + k * 7_000)
        sizes.append(asks[1:, 1] * asks[1:, 0])
        gaps.append(np.diff(asks[:, 0]) / asks[0, 0])
    mean_size, mean_gap = np.mean(sizes, axis=0), np.mean(gaps, axis=0)
    assert mean_size[:10].mean() > 2.0 * mean_size[-10:].mean()  # exp(-k/25): ~2.9x between those bands
    assert mean_gap[-10:].mean() > 1.6 * mean_gap[1:11].mean()  # (k + 1)^1.3 - k^1.3: ~2x between those bands


def test_hot_regime_doubles_the_perp_spread() -> None:
    ex = pinned("binance")
    m = ex._m["1000PEPE/USDT:USDT"]
    world = ex.world
    hot_h = (START_MS // DAY_MS * DAY_MS - 12 * DAY_MS) // HOUR_MS  # the forced regime of its interval change
    calm_h = next(h for h in range(hot_h - 400, hot_h - 100) if not world.hot(m.venue.index, m.a, h))
    assert world.hot(m.venue.index, m.a, hot_h)

    def spread_bps(h: int) -> float:
        chunk = ex.data.chunk(m, h)
        return float(np.median((chunk.ask - chunk.bid) / chunk.mid) * 1e4)

    ratio = spread_bps(hot_h) / spread_bps(calm_h)
    assert 1.6 < ratio < 2.5

    def depth_usd(h: int) -> float:
        books = [ex.book.levels(m, h * HOUR_MS + k * 10_000)[1] for k in range(50)]
        return float(np.mean([(asks[1:, 0] * asks[1:, 1]).sum() for asks in books]))

    assert 0.35 < depth_usd(hot_h) / depth_usd(calm_h) < 0.7  # HOT_DEPTH = 0.5, log-normal sizes around it


def test_the_book_is_the_same_whenever_and_wherever_it_is_asked_for() -> None:
    a, b = pinned("okx"), pinned("okx", START_MS + 9 * HOUR_MS)
    t = START_MS + 2 * HOUR_MS + 1234
    first = a.book.structure(a._m["BTC/USDT:USDT"], t)
    b.book.structure(b._m["BTC/USDT:USDT"], t + 5_000)  # other books first
    assert b.book.structure(b._m["BTC/USDT:USDT"], t) == first


def test_watch_order_book_streams_one_book_per_interval_and_counts_them() -> None:
    async def go() -> tuple[SimExchange, list[dict]]:
        ex = SimExchange("binance", sim(speed=2_000.0), book_interval_ms=1000)
        books = [await ex.watch_order_book("BTC/USDT:USDT", 10) for _ in range(4)]
        await asyncio.sleep(0.01)
        books.append(await ex.watch_order_book("BTC/USDT:USDT", 10))
        return ex, books

    ex, books = run(go())
    nonces = [b["nonce"] for b in books]
    assert nonces == sorted(set(nonces)) and all(len(b["bids"]) == 10 for b in books)
    assert ex.emitted[("order_book", "BTC/USDT:USDT")] == len(books)
    last = books[-1]
    assert last == ex.book.structure(ex._m["BTC/USDT:USDT"], last["timestamp"], 10)
