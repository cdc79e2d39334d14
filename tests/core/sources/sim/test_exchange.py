"""The simulated exchange's ccxt face: markets and unified structures, live == history, pagination,
each venue's funding channel, close, history bounds and a pinned clock."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.sim import VENUES, SimExchange
from fundarb_dagster.core.units import DAY_MS, HOUR_MS, MINUTE_MS

from .common import START_MS, collect_trades, fetch_all_funding, fetch_all_trades, run, sim, trade_key


# -- markets and structures ---------------------------------------------------------------------------
def test_venues_list_required_markets_and_registry_reads_them() -> None:
    assert {"binance", "bybit", "okx", "hyperliquid"} <= set(VENUES)

    async def go() -> dict[str, SimExchange]:
        out = {}
        for venue in VENUES:
            ex = SimExchange(venue, sim())
            await ex.load_markets()
            out[venue] = ex
        return out

    exchanges = run(go())
    for venue in ("binance", "bybit", "okx"):
        assert {"BTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT"} <= set(exchanges[venue].markets)
        assert len(exchanges[venue].symbols) >= 20
    assert {"BTC/USDC", "BTC/USDC:USDC", "kPEPE/USDC:USDC"} <= set(exchanges["hyperliquid"].markets)
    assert "1000PEPE/USDT:USDT" in exchanges["binance"].markets
    assert "1000PEPE/USDT:USDT" in exchanges["bybit"].markets

    registry = InstrumentRegistry()
    pepe = registry.add_market("binance", exchanges["binance"].markets["1000PEPE/USDT:USDT"])
    kpepe = registry.add_market("hyperliquid", exchanges["hyperliquid"].markets["kPEPE/USDC:USDC"])
    okx_btc = registry.add_market("okx", exchanges["okx"].markets["BTC/USDT:USDT"])
    assert (pepe.underlying, pepe.multiplier, pepe.is_perp) == ("PEPE", 1000.0, True)
    assert (kpepe.underlying, kpepe.multiplier) == ("PEPE", 1000.0)
    assert okx_btc.contract_size == 0.01 and okx_btc.venue_symbol == "BTC-USDT-SWAP"

    market = exchanges["binance"].markets["BTC/USDT:USDT"]
    for key in ("id", "symbol", "base", "quote", "settle", "baseId", "quoteId", "type", "spot", "swap", "linear"):
        assert key in market
    for key in ("contract", "contractSize", "active", "precision", "limits", "info"):
        assert key in market
    assert market["info"]["fundingIntervalHours"] == 8.0
    assert market["info"]["fundingCap"] == VENUES["binance"].cap("BTC") == -market["info"]["fundingFloor"]
    assert exchanges["hyperliquid"].markets["BTC/USDC:USDC"]["info"]["fundingIntervalHours"] == 1.0


def test_constructor_opens_nothing_and_unknown_venue_is_named() -> None:
    ex = SimExchange("bybit", sim())
    assert ex.clock.wall0 is None and ex.markets == {} and ex._world.built is None
    with pytest.raises(ValueError, match="kraken"):
        SimExchange("kraken", sim())


def test_ccxt_structures_have_the_unified_keys() -> None:
    async def go() -> tuple:
        ex = SimExchange("okx", sim())
        await ex.load_markets()
        trades = await ex.watch_trades("ETH/USDT:USDT")
        ticker = await ex.watch_ticker("ETH/USDT:USDT")
        funding = await ex.watch_funding_rate("ETH/USDT:USDT")
        candles = await ex.watch_ohlcv("ETH/USDT:USDT")
        history = await ex.fetch_funding_rate_history("ETH/USDT:USDT", limit=3)
        spot_ticker = await ex.fetch_ticker("ETH/USDT")
        return ex, trades, ticker, funding, candles, history, spot_ticker

    ex, trades, ticker, funding, candles, history, spot_ticker = run(go())
    trade_keys = {"id", "timestamp", "datetime", "symbol", "side", "price", "amount", "cost", "takerOrMaker", "info"}
    assert trade_keys <= set(trades[0])
    assert trades[0]["side"] in ("buy", "sell")
    contract_size = ex.markets["ETH/USDT:USDT"]["contractSize"]
    assert math.isclose(trades[0]["cost"], trades[0]["price"] * trades[0]["amount"] * contract_size)
    ticker_keys = {"bid", "ask", "bidVolume", "askVolume", "last", "close", "markPrice", "indexPrice", "timestamp"}
    assert ticker_keys <= set(ticker) and "info" in ticker
    assert ticker["bid"] < ticker["ask"] and ticker["markPrice"] > 0 and ticker["indexPrice"] > 0
    assert spot_ticker["markPrice"] is None and spot_ticker["indexPrice"] is None
    funding_keys = {"fundingRate", "fundingTimestamp", "nextFundingRate", "nextFundingTimestamp", "markPrice"}
    assert funding_keys | {"indexPrice", "interval", "timestamp", "info"} <= set(funding)
    assert funding["interval"] == "8h" and funding["fundingTimestamp"] > funding["timestamp"]
    assert all(len(row) == 6 for row in candles)
    assert {"info", "symbol", "fundingRate", "timestamp", "datetime"} <= set(history[0])
    assert trades[0]["datetime"] == ex.iso8601(trades[0]["timestamp"])


# -- live == history ------------------------------------------------------------------------------------
def test_watch_trades_equal_fetch_trades_over_the_range() -> None:
    async def go() -> tuple[list[dict], list[dict], SimExchange]:
        ex = SimExchange("binance", sim(speed=30_000))
        key = ("trades", "BTC/USDT:USDT")
        live, _ = await collect_trades(ex, "BTC/USDT:USDT", 0.4, enough=lambda: ex.emitted.get(key, 0) > 2000)
        history = await fetch_all_trades(ex, "BTC/USDT:USDT", live[0]["timestamp"], live[-1]["timestamp"])
        return live, history, ex

    live, history, ex = run(go())
    assert len(live) > 2000  # several fetch pages
    assert [trade_key(t) for t in live] == [trade_key(t) for t in history]
    assert ex.emitted[("trades", "BTC/USDT:USDT")] == len(live)
    assert all(live[i]["timestamp"] < live[i + 1]["timestamp"] for i in range(len(live) - 1))


def test_closed_watch_ohlcv_candles_equal_fetch_ohlcv() -> None:
    async def go(timeframe: str) -> tuple[dict[int, list], list[list]]:
        ex = SimExchange("bybit", sim(speed=40_000), ohlcv_update_ms=5000)
        closed: dict[int, list] = {}
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:
            rows = await ex.watch_ohlcv("ETH/USDT", timeframe)
            for row in rows[:-1]:  # everything before the current candle is final
                closed[row[0]] = row
        first = min(closed)
        fetched = await ex.fetch_ohlcv("ETH/USDT", timeframe, since=first, limit=len(closed))
        return closed, fetched

    for timeframe in ("1m", "5m"):
        closed, fetched = run(go(timeframe))
        assert len(closed) >= 3
        by_ts = {row[0]: row for row in fetched}
        assert all(closed[ts] == by_ts[ts] for ts in closed)


def test_streamed_previous_funding_equals_settled_history() -> None:
    async def go() -> tuple[dict[int, float], dict[int, float]]:
        ex = SimExchange("hyperliquid", sim(speed=200_000), funding_update_ms=60_000, funding_channel="unified")
        streamed: dict[int, float] = {}
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            message = await ex.watch_funding_rate("ETH/USDC:USDC")
            streamed[message["previousFundingTimestamp"]] = message["previousFundingRate"]
        history = await ex.fetch_funding_rate_history("ETH/USDC:USDC", since=min(streamed), limit=1000)
        return streamed, {h["timestamp"]: h["fundingRate"] for h in history}

    streamed, settled = run(go())
    assert len(streamed) >= 5
    assert all(streamed[t] == settled[t] for t in streamed)


# -- pagination and venue channels ----------------------------------------------------------------------
def test_fetch_ohlcv_and_funding_history_paginate_like_ccxt() -> None:
    since = START_MS - 4 * DAY_MS

    async def go() -> tuple:
        ex = SimExchange("binance", sim())
        whole = await ex.fetch_ohlcv("SOL/USDT", "5m", since=since, limit=1000)
        pages: list[list] = []
        cursor = since
        while len(pages) < 1000:
            page = await ex.fetch_ohlcv("SOL/USDT", "5m", since=cursor, limit=150)
            pages.extend(page)
            if len(page) < 150:
                break
            cursor = page[-1][0] + 1
        until = since + 3 * HOUR_MS
        bounded = await ex.fetch_ohlcv("SOL/USDT", "5m", since=since, params={"until": until})
        before = ex.milliseconds()
        latest = await ex.fetch_ohlcv("SOL/USDT", "1m", limit=5)
        latest_range = (before // MINUTE_MS * MINUTE_MS, ex.milliseconds())
        params = {"until": START_MS - 1}
        funding_all = await ex.fetch_funding_rate_history("SOL/USDT:USDT", since=since, limit=1000, params=params)
        funding_pages = await fetch_all_funding(ex, "SOL/USDT:USDT", since, START_MS - 1)
        return whole, pages, bounded, until, latest, latest_range, funding_all, funding_pages

    whole, pages, bounded, until, latest, latest_range, funding_all, funding_pages = run(go())
    assert len(whole) == 1000 and pages[: len(whole)] == whole[: len(pages)]
    assert len(pages) > 1000 - 150
    assert [r[0] for r in whole] == list(range(whole[0][0], whole[0][0] + 1000 * 300_000, 300_000))
    assert bounded[-1][0] <= until and len(bounded) == 37
    assert len(latest) == 5 and latest_range[0] <= latest[-1][0] <= latest_range[1]
    assert np.all(np.diff([r[0] for r in latest]) == MINUTE_MS)
    assert funding_all == funding_pages and len(funding_all) == 12  # 4 days of 8h settlements before start


def test_each_venue_streams_funding_on_its_own_channel() -> None:
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        binance = SimExchange("binance", sim())
        out["binance"] = (binance.has, await binance.watch_mark_price("BTC/USDT:USDT"), binance)
        bybit = SimExchange("bybit", sim())
        out["bybit"] = (bybit.has, await bybit.watch_ticker("BTC/USDT:USDT"), bybit)
        with pytest.raises(ccxt.NotSupported):
            await bybit.watch_mark_price("BTC/USDT:USDT")
        hyper = SimExchange("hyperliquid", sim())
        out["hyperliquid"] = (hyper.has, await hyper.watch_ticker("BTC/USDC:USDC"), hyper)
        okx = SimExchange("okx", sim())
        out["okx"] = (okx.has, await okx.watch_funding_rate("BTC/USDT:USDT"), okx)
        return out

    out = run(go())
    has, message, ex = out["binance"]
    assert has["watchMarkPrice"] and not has["watchFundingRate"]
    expected = ex.funding_rate_at("BTC/USDT:USDT", message["timestamp"])
    assert float(message["info"]["r"]) == expected["fundingRate"]
    assert message["info"]["T"] == expected["fundingTimestamp"]
    has, message, ex = out["bybit"]
    assert not has["watchFundingRate"]
    expected = ex.funding_rate_at("BTC/USDT:USDT", message["timestamp"])
    assert float(message["info"]["fundingRate"]) == expected["fundingRate"]
    assert message["info"]["fundingIntervalHour"] == "8"
    has, message, ex = out["hyperliquid"]
    assert not has["watchFundingRate"]
    expected = ex.funding_rate_at("BTC/USDC:USDC", message["timestamp"])
    assert float(message["info"]["funding"]) == expected["fundingRate"] and expected["interval"] == "1h"
    assert float(message["info"]["oraclePx"]) == message["indexPrice"]
    has, message, _ = out["okx"]
    assert has["watchFundingRate"] and message["fundingRate"] is not None


def test_close_stops_watching() -> None:
    async def go() -> None:
        ex = SimExchange("binance", sim())
        await ex.watch_trades("BTC/USDT")
        await ex.close()
        with pytest.raises(ccxt.ExchangeClosedByUser):
            await ex.watch_trades("BTC/USDT")

    run(go())


def test_history_is_empty_before_the_origin_and_after_the_clock() -> None:
    async def go() -> list:
        ex = SimExchange("okx", sim(speed=1.0))
        origin = ex.world.origin_ms
        future = ex.milliseconds() + DAY_MS
        return [
            await ex.fetch_trades("BTC/USDT", params={"until": origin - 1}),
            await ex.fetch_ohlcv("BTC/USDT", "1m", since=origin - DAY_MS, params={"until": origin - 1}),
            await ex.fetch_funding_rate_history("BTC/USDT:USDT", params={"until": origin}),
            await ex.fetch_trades("BTC/USDT", since=future),
            await ex.fetch_ohlcv("BTC/USDT", "1m", since=future),
            await ex.fetch_funding_rate_history("BTC/USDT:USDT", since=future),
            await ex.fetch_ohlcv("BTC/USDT", "1h", since=origin - DAY_MS, limit=2),
        ]

    *empty, first_bars = run(go())
    assert all(result == [] for result in empty)
    assert len(first_bars) == 2 and first_bars[0][0] == SimExchange("okx", sim()).world.origin_ms


def test_a_pinned_clock_serves_history_up_to_now_and_stands_still():

    start = "2026-11-01T00:00:00Z"
    pinned = SimExchange("binance", SimConfig(start=start, now="2026-11-02T00:00:00Z"), symbols=["BTC/USDT:USDT"])
    running = SimExchange("binance", SimConfig(start=start), symbols=["BTC/USDT:USDT"])
    since = pinned.sim.start_ms
    later = asyncio.run(pinned.fetch_funding_rate_history("BTC/USDT:USDT", since=since))
    now = asyncio.run(running.fetch_funding_rate_history("BTC/USDT:USDT", since=since))
    assert pinned.milliseconds() == pinned.sim.now_ms == pinned.milliseconds()
    # The 8h settlements of the pinned day are published; a clock just started has none after start yet.
    assert [r["timestamp"] for r in later] == [since + h * 3_600_000 for h in (0, 8, 16, 24)]
    assert [r["timestamp"] for r in now] == [since]
