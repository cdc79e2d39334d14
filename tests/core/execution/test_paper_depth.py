"""A paper venue over a source that carries order books fills against the captured depth: level by level, the
rest of an order larger than the depth expired; over a source without books (or with depth off), at the quote.

Checked against books built without the paper venue: the simulator's own book structure at the captured
book's time, and bybit's recorded `orderbook.200` frames rebuilt with plain json (the order_book stream's
test does the same, `tests/core/sources/test_feed_order_book.py`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.execution.paper import PaperExchange
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sources.wire import create_wire_exchange
from tests.core.sources.test_feed_order_book import bybit_books, sampled

PERP = "BTC/USDT:USDT"
LEVELS = 20


def walk(levels: list[list[float]], amount: float) -> list[float]:
    """price, amount taken from each level (flat), best first, until `amount` or the levels run out."""
    out, left = [], amount
    for price, size in levels:
        if left <= 1e-12:
            break
        take = min(size, left)
        out += [price, take]
        left -= take
    return out


def fills(order: dict[str, Any]) -> list[float]:
    """price, amount of each of the order's trades (flat)."""
    return [x for t in order["trades"] for x in (t["price"], t["amount"])]


def levels(side: list[list[float]]) -> list[float]:
    return [x for level in side[:LEVELS] for x in level[:2]]


async def first_book(venue: PaperExchange, symbol: str, timeout_s: float = 60.0) -> None:
    await venue.load_markets()
    await venue.fetch_ticker(symbol)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not venue.market.books.get(symbol) or not venue.market.books[symbol].times:
        assert asyncio.get_running_loop().time() < deadline, f"no book streamed: {venue.errors}"
        await asyncio.sleep(0.02)


def test_paper_orders_walk_the_simulators_book_and_a_larger_one_fills_the_depth() -> None:
    async def run(depth: bool) -> dict[str, Any]:
        source = SimExchange("binance", SimConfig(speed=60.0))  # a book every 10 market s (the Feed's sampling)
        venue = PaperExchange(source, InstrumentRegistry(), (PERP,), {"USDT": 50_000_000.0}, depth=depth)
        try:
            await venue.load_markets()
            await venue.fetch_ticker(PERP)
            if depth:
                await first_book(venue, PERP)
            book = source.book.structure(source._m[PERP], venue.milliseconds())
            small = round(book["asks"][0][1] + book["asks"][1][1] / 2, 3)  # about a level and a half
            big = round(1.5 * sum(s for _, s in book["bids"][:LEVELS]), 3)  # beyond the captured 20 levels
            buy = await venue.create_order(PERP, "market", "buy", small)
            met_buy = venue.market.met[PERP]
            sell = await venue.create_order(PERP, "market", "sell", big)
            met_sell = venue.market.met[PERP]
            quote = venue.market.quotes[PERP].at(met_sell)
            # the books the orders met, as the simulator itself builds them (50 levels)
            at = {t: source.book.structure(source._m[PERP], t) for t in (met_buy, met_sell)}
            return {"buy": buy, "sell": sell, "met": (met_buy, met_sell), "books": at, "quote": quote}
        finally:
            await venue.close()

    got = asyncio.run(run(depth=True))
    buy, sell = got["buy"], got["sell"]
    asks = got["books"][got["met"][0]]["asks"]
    bids = got["books"][got["met"][1]]["bids"]
    assert fills(buy) == pytest.approx(walk(asks, buy["amount"]))
    assert len(buy["trades"]) >= 2 and buy["status"] == "closed"
    captured = sum(s for _, s in bids[:LEVELS])  # the stream keeps 20 levels: the depth the paper venue has
    assert sell["status"] == "expired"  # a market order is immediate-or-cancel: what the depth cannot fill expires
    assert sell["filled"] == pytest.approx(captured) and sell["remaining"] == pytest.approx(sell["amount"] - captured)
    assert fills(sell) == pytest.approx(levels(bids))
    assert sell["average"] == pytest.approx(sum(p * s for p, s in bids[:LEVELS]) / captured)

    # the same orders with depth off fill whole at the quote in force: the captured book is what changed them
    got = asyncio.run(run(depth=False))
    bid = got["quote"][0]
    assert got["sell"]["status"] == "closed" and got["sell"]["filled"] == pytest.approx(got["sell"]["amount"])
    assert {t["price"] for t in got["sell"]["trades"]} == {bid} and len(got["buy"]["trades"]) == 1


def test_paper_orders_walk_a_recorded_bybit_book(fixtures_dir: Path) -> None:
    path = fixtures_dir / "ws_recordings" / "BYBIT.jsonl.zst"
    interval_ms = 1_000

    async def run() -> tuple[dict, dict, int, int]:
        source = create_wire_exchange("bybit", str(path), speed=4.0)
        options = {"book_interval_s": interval_ms / 1000, "book_levels": LEVELS}
        venue = PaperExchange(source, InstrumentRegistry(), (PERP,), {"USDT": 1e9}, feed_options=options)
        try:
            await first_book(venue, PERP)
            await asyncio.sleep(1.0)  # a few books on
            captured = venue.market.books[PERP].rows[-1]
            big = round(1.5 * sum(s for _, s in captured[1]), 3)
            buy = await venue.create_order(PERP, "market", "buy", big)
            met_buy = venue.market.met[PERP]
            small = round(captured[0][0][1] / 2, 3) or 0.001
            sell = await venue.create_order(PERP, "market", "sell", small)
            return buy, sell, met_buy, venue.market.met[PERP]
        finally:
            await venue.close()

    buy, sell, met_buy, met_sell = asyncio.run(run())
    states = {ts: (b, a) for ts, _, b, a in sampled(bybit_books(path, "BYBIT.ws.2", "BTCUSDT"), interval_ms)}
    bids, asks = states[met_buy]  # the recorded book the buy met, rebuilt from the raw frames
    depth = sum(s for _, s in asks[:LEVELS])
    assert buy["status"] == "expired" and buy["filled"] == pytest.approx(depth)
    assert fills(buy) == pytest.approx(levels(asks))
    bids, _ = states[met_sell]
    assert sell["status"] == "closed" and fills(sell) == pytest.approx(walk(bids, sell["amount"]))
