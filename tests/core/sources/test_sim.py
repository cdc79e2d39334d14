"""The simulated exchange: determinism, live == history, the venues' funding formulas, pacing and faults.

Every test drives a real SimExchange through its ccxt.pro-shaped async methods at a high sim speed, and
checks numbers against an independent computation (numpy/plain Python) or against the sim's own history.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core.config import FaultConfig, SimConfig
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.sim import VENUES, SimExchange
from fundarb_dagster.core.units import DAY_MS, HOUR_MS, MINUTE_MS

START = "2026-11-01T00:00:00Z"
START_MS = SimConfig(start=START).start_ms


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sim(seed: int = 7, speed: float = 20_000.0, faults: FaultConfig | None = None) -> SimConfig:
    return SimConfig(seed=seed, speed=speed, start=START, faults=faults or FaultConfig())


async def collect_trades(ex: SimExchange, symbol: str, wall_s: float) -> tuple[list[dict], int]:
    """watch_trades for a while; returns the messages and the number of NetworkErrors (reconnects)."""
    out: list[dict] = []
    errors = 0
    deadline = time.monotonic() + wall_s
    while time.monotonic() < deadline:
        try:
            out.extend(await ex.watch_trades(symbol))
        except ccxt.NetworkError:
            errors += 1
    return out, errors


async def fetch_all_trades(ex: SimExchange, symbol: str, since: int, until: int) -> list[dict]:
    """Page through fetch_trades like a ccxt user: since = last timestamp + 1."""
    out: list[dict] = []
    cursor = since
    while True:
        page = await ex.fetch_trades(symbol, since=cursor, limit=1000, params={"until": until})
        out.extend(page)
        if len(page) < 1000:
            return out
        cursor = page[-1]["timestamp"] + 1


def trade_key(t: dict) -> tuple:
    return (t["id"], t["timestamp"], t["price"], t["amount"], t["side"])


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
    assert ex._wall0 is None and ex.markets == {} and ex._world is None
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


# -- determinism ----------------------------------------------------------------------------------------
def test_same_seed_gives_same_history_and_another_seed_differs() -> None:
    since = START_MS - 3 * DAY_MS
    until = since + 20 * MINUTE_MS

    async def history(seed: int) -> tuple:
        ex = SimExchange("bybit", sim(seed=seed))
        trades = await ex.fetch_trades("SOL/USDT:USDT", since=since, params={"until": until})
        candles = await ex.fetch_ohlcv("SOL/USDT", "1m", since=since, limit=20)
        funding = await ex.fetch_funding_rate_history("SOL/USDT:USDT", since=since, limit=5)
        return [trade_key(t) for t in trades], candles, [f["fundingRate"] for f in funding]

    a, b, c = run(history(7)), run(history(7)), run(history(8))
    assert a == b
    assert len(a[0]) > 100
    assert a[0] != c[0] and a[1] != c[1]


def test_history_is_the_same_whichever_order_ranges_are_asked() -> None:
    since = START_MS - 10 * DAY_MS

    async def go(order: list[int]) -> dict[int, list]:
        ex = SimExchange("binance", sim())
        out = {}
        for k in order:
            out[k] = await ex.fetch_ohlcv("ETH/USDT", "1m", since=since + k * HOUR_MS, limit=30)
        return out

    forward, backward = run(go([0, 5, 40])), run(go([40, 5, 0]))
    assert forward == backward


# -- live == history ------------------------------------------------------------------------------------
def test_watch_trades_equal_fetch_trades_over_the_range() -> None:
    async def go() -> tuple[list[dict], list[dict], SimExchange]:
        ex = SimExchange("binance", sim(speed=30_000))
        live, _ = await collect_trades(ex, "BTC/USDT:USDT", 0.4)
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


# -- funding maths --------------------------------------------------------------------------------------
def independent_rate(samples: np.ndarray, interval_h: float, venue: str, asset: str) -> float:
    """The venues' documented formula, written again from the docs (not calling the sim's function)."""
    spec = VENUES[venue]
    if spec.premium_average == "weighted":
        weights = np.arange(1, len(samples) + 1)
        premium = (weights * samples).sum() / weights.sum()
    else:
        premium = samples.mean()
    if spec.funding_style == "clamp":
        interest = 0.0001 * interval_h / 8
        rate = premium + np.clip(interest - premium, -0.0005, 0.0005)
    else:
        rate = (premium + np.clip(0.0001 - premium, -0.0005, 0.0005)) / 8 * interval_h
    cap = spec.cap(asset)
    return float(np.clip(rate, -cap, cap))


@pytest.mark.parametrize(
    ("venue", "symbol", "asset"),
    [("binance", "1000PEPE/USDT:USDT", "PEPE"), ("hyperliquid", "SOL/USDC:USDC", "SOL")],
)
def test_settled_funding_matches_formula_from_premium_path(venue: str, symbol: str, asset: str) -> None:
    async def go() -> tuple[SimExchange, list[dict]]:
        ex = SimExchange(venue, sim())
        await ex.load_markets()
        since = START_MS - (30 if venue == "binance" else 6) * DAY_MS
        return ex, await fetch_all_funding(ex, symbol, since)

    ex, history = run(go())
    assert len(history) >= 90
    clamp_active = capped = plain = 0
    for row in history:
        t = row["timestamp"]
        interval_h = row["info"]["fundingIntervalHours"]
        times, samples = ex.premium_index(symbol, t - int(interval_h * HOUR_MS), t)
        assert len(samples) == interval_h * 60 and times[-1] == t - MINUTE_MS
        expected = independent_rate(samples, interval_h, venue, asset)
        assert abs(row["fundingRate"] - expected) <= 1e-8 + 1e-12
        cap = VENUES[venue].cap(asset)
        interest = 0.0001 * interval_h / 8
        if abs(expected) >= cap - 1e-12:
            capped += 1
        elif abs(row["fundingRate"] - interest) > 1e-8:
            clamp_active += 1
        else:
            plain += 1
    assert plain > 0 and clamp_active > 0
    if venue == "binance":
        assert capped > 0  # the hot regime before the interval change drives the rate into the cap


async def fetch_all_funding(ex: SimExchange, symbol: str, since: int, until: int | None = None) -> list[dict]:
    out: list[dict] = []
    while True:
        page = await ex.fetch_funding_rate_history(symbol, since=since, limit=100, params={"until": until})
        out.extend(page)
        if len(page) < 100:
            return out
        since = page[-1]["timestamp"] + 1


def test_predicted_funding_converges_to_settled_and_differs_before() -> None:
    async def go() -> tuple[SimExchange, list[dict]]:
        ex = SimExchange("okx", sim())
        await ex.load_markets()
        return ex, await ex.fetch_funding_rate_history("BTC/USDT:USDT", since=START_MS - 10 * DAY_MS, limit=30)

    ex, history = run(go())
    errors = []
    for row in history:
        t = row["timestamp"]
        last = ex.funding_rate_at("BTC/USDT:USDT", t - 1)
        early = ex.funding_rate_at("BTC/USDT:USDT", t - 7 * HOUR_MS)
        assert last["fundingTimestamp"] == early["fundingTimestamp"] == t
        assert last["fundingRate"] == row["fundingRate"]
        errors.append(early["fundingRate"] - row["fundingRate"])
    assert any(abs(e) > 1e-7 for e in errors)  # forecast error exists


def test_interval_change_is_reported_in_history_markets_and_structures() -> None:
    async def go() -> tuple[SimExchange, list[dict], dict]:
        ex = SimExchange("binance", sim())
        await ex.load_markets()
        history = await fetch_all_funding(ex, "1000PEPE/USDT:USDT", START_MS - 20 * DAY_MS)
        return ex, history, await ex.fetch_funding_rate("1000PEPE/USDT:USDT")

    ex, history, current = run(go())
    rates = run(ex.fetch_funding_rates(["1000PEPE/USDT:USDT", "BTC/USDT:USDT"]))
    assert {s: r["interval"] for s, r in rates.items()} == {"1000PEPE/USDT:USDT": "4h", "BTC/USDT:USDT": "8h"}
    intervals = [row["info"]["fundingIntervalHours"] for row in history]
    change = next(i for i, h in enumerate(intervals) if h == 4.0)
    assert set(intervals[:change]) == {8.0} and set(intervals[change:]) == {4.0}
    gaps = np.diff([row["timestamp"] for row in history])
    assert set(gaps[: change - 1]) == {8 * HOUR_MS} and set(gaps[change:]) == {4 * HOUR_MS}
    assert current["interval"] == "4h"
    spans = ex.markets["1000PEPE/USDT:USDT"]["info"]["fundingIntervalHistory"]
    assert [hours for _, hours in spans] == [8.0, 4.0] and spans[1][0] == history[change - 1]["timestamp"]
    assert ex.markets["BTC/USDT:USDT"]["info"]["fundingIntervalHours"] == 8.0

    registry = InstrumentRegistry()
    for row in (history[0], history[-1]):
        structure = ex.funding_rate_at("1000PEPE/USDT:USDT", row["timestamp"] - 1)
        interval_h = float(structure["interval"].rstrip("h"))
        registry.observe_interval("binance", "1000PEPE/USDT:USDT", structure["timestamp"], interval_h)
    assert [s.interval_h for s in registry.interval_history("binance", "1000PEPE/USDT:USDT")] == [8.0, 4.0]


# -- market model ---------------------------------------------------------------------------------------
def test_spot_is_correlated_across_venues_and_perp_premium_mean_reverts() -> None:
    since = START_MS - 5 * DAY_MS

    async def closes(venue: str, symbol: str) -> np.ndarray:
        ex = SimExchange(venue, sim())
        rows = await ex.fetch_ohlcv(symbol, "1m", since=since, limit=600)
        return np.array([r[4] for r in rows])

    binance = run(closes("binance", "BTC/USDT"))
    okx = run(closes("okx", "BTC/USDT"))
    hyper = run(closes("hyperliquid", "BTC/USDC"))
    for other in (okx, hyper):
        corr = np.corrcoef(np.diff(np.log(binance)), np.diff(np.log(other)))[0, 1]
        assert corr > 0.9
        assert np.max(np.abs(binance / other - 1)) < 0.002  # the same asset, a few bp apart

    ex = SimExchange("bybit", sim())
    run(ex.load_markets())
    times, premium = ex.premium_index("ETH/USDT:USDT", START_MS - 60 * DAY_MS, START_MS)
    hourly = premium.reshape(-1, 60).mean(axis=1)
    hours = times[::60] // HOUR_MS
    # The premium reverts towards a level that moves with regimes (3-day blocks): regress the next hour's
    # change on the deviation from the block's mean, away from block boundaries.
    blocks = hours // 72
    deviation = hourly - np.array([hourly[blocks == b].mean() for b in blocks])
    inside = (hours % 72 >= 24)[:-1] & (blocks[1:] == blocks[:-1])
    x, dx = deviation[:-1][inside], np.diff(hourly)[inside]
    slope, intercept = np.polyfit(x, dx, 1)
    residual = dx - (slope * x + intercept)
    stderr = math.sqrt(residual.var() / ((x - x.mean()) ** 2).sum())
    assert slope / stderr < -4  # a random walk would give a slope near 0
    assert -0.3 < slope < -0.03  # an hours-long half-life, as modelled
    assert abs(hourly.mean()) < 0.002


# -- clock and pacing -----------------------------------------------------------------------------------
def test_virtual_clock_runs_at_speed_and_trades_never_come_from_the_future() -> None:
    wall0 = time.time() - 10.0
    ex = SimExchange("binance", sim(speed=100.0), wall_start=wall0)
    before = time.time()
    now = ex.milliseconds()
    after = time.time()
    assert START_MS + (before - wall0) * 100_000 - 1 <= now <= START_MS + (after - wall0) * 100_000 + 1

    async def go() -> list[tuple[int, int]]:
        out = []
        for _ in range(20):
            trades = await ex.watch_trades("ETH/USDT")
            out.append((trades[-1]["timestamp"], ex.milliseconds()))
        return out

    for last_ts, clock in run(go()):
        assert last_ts <= clock


def test_watch_waits_for_the_next_event_instead_of_returning_empty() -> None:
    ex = SimExchange("okx", sim(speed=50.0), ticker_interval_ms=1000)

    async def go() -> list[dict]:
        return [await ex.watch_ticker("BTC/USDT") for _ in range(4)]

    tickers = run(go())
    stamps = [t["timestamp"] for t in tickers]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # each call waited for a new tick
    assert all(s % 1000 == 0 for s in stamps)


# -- faults ---------------------------------------------------------------------------------------------
def test_disconnects_raise_network_error_and_every_lost_trade_is_counted() -> None:
    faults = FaultConfig(disconnect_every_s=300)

    async def go() -> tuple[SimExchange, list[dict], int, list[dict]]:
        ex = SimExchange("bybit", sim(speed=30_000, faults=faults))
        live, errors = await collect_trades(ex, "BTC/USDT", 0.4)
        first, served = ex.served_range("trades", "BTC/USDT")
        history = await fetch_all_trades(ex, "BTC/USDT", first + 1, served)
        return ex, live, errors, history

    ex, live, errors, history = run(go())
    assert errors >= 2
    assert ex.faults_injected[("disconnect", "trades", "BTC/USDT")] == errors
    received = {t["id"] for t in live}
    assert received <= {t["id"] for t in history}
    assert len(history) - len(received) == ex.lost[("disconnect", "trades", "BTC/USDT")] > 0
    assert ex.emitted[("trades", "BTC/USDT")] == len(live)


def test_un_watch_drops_the_subscription_and_counts_what_was_missed() -> None:
    async def go() -> tuple[SimExchange, list[dict], list[dict]]:
        ex = SimExchange("binance", sim(speed=30_000))
        live, _ = await collect_trades(ex, "XRP/USDT", 0.1)
        await ex.un_watch_trades("XRP/USDT")
        await asyncio.sleep(0.05)  # ~25 market minutes pass unsubscribed
        more, _ = await collect_trades(ex, "XRP/USDT", 0.1)
        first, served = ex.served_range("trades", "XRP/USDT")
        history = await fetch_all_trades(ex, "XRP/USDT", first + 1, served)
        return ex, live + more, history

    ex, live, history = run(go())
    assert ex.has["unWatchTrades"]
    missed = ex.lost[("unwatch", "trades", "XRP/USDT")]
    assert missed > 100
    assert len(history) == len(live) + missed
    assert {t["id"] for t in live} <= {t["id"] for t in history}


def test_stale_periods_go_silent_and_their_trades_are_counted_lost() -> None:
    faults = FaultConfig(stale_every_s=600, stale_duration_s=120)

    async def go() -> tuple[SimExchange, list[dict], list[dict]]:
        ex = SimExchange("okx", sim(speed=30_000, faults=faults))
        live, _ = await collect_trades(ex, "SOL/USDT", 0.4)
        first, served = ex.served_range("trades", "SOL/USDT")
        history = await fetch_all_trades(ex, "SOL/USDT", first + 1, served)
        return ex, live, history

    ex, live, history = run(go())
    assert ex.faults_injected[("stale", "trades", "SOL/USDT")] >= 2
    gaps = np.diff([t["timestamp"] for t in live])
    assert gaps.max() >= 120_000  # the silence is visible in the stream
    assert len(history) - len(live) == ex.lost[("stale", "trades", "SOL/USDT")] > 0


def is_malformed_trade(t: dict, clock: int) -> bool:
    price = t.get("price")
    return (
        "amount" not in t or price is None or not math.isfinite(price) or price <= 0 or t["timestamp"] > clock + DAY_MS
    )


def test_malformed_duplicate_and_out_of_order_trades_are_injected_and_recorded() -> None:
    async def go(faults: FaultConfig) -> tuple[SimExchange, list[dict]]:
        ex = SimExchange("binance", sim(speed=20_000, faults=faults))
        live, _ = await collect_trades(ex, "ETH/USDT:USDT", 0.3)
        return ex, live

    symbol = "ETH/USDT:USDT"
    ex, live = run(go(FaultConfig(malformed_rate=0.02)))
    bad = [t for t in live if is_malformed_trade(t, ex.milliseconds())]
    assert len(bad) == ex.faults_injected[("malformed", "trades", symbol)] > 20
    assert len(live) - len(bad) == ex.emitted[("trades", symbol)]
    reasons = {reason for reason, _, _ in ex.malformed_kinds}
    assert reasons == {"price:nan", "price:negative", "missing:amount", "timestamp:future"}
    assert sum(ex.malformed_kinds.values()) == len(bad)

    ex, live = run(go(FaultConfig(duplicate_rate=0.02)))
    counts = Counter(t["id"] for t in live)
    assert sum(n - 1 for n in counts.values()) == ex.faults_injected[("duplicate", "trades", symbol)] > 20

    ex, live = run(go(FaultConfig(out_of_order_rate=0.02)))
    stamps = [t["timestamp"] for t in live]
    inversions = sum(1 for a, b in zip(stamps, stamps[1:], strict=False) if b < a)
    assert inversions == ex.faults_injected[("out_of_order", "trades", symbol)] > 20
    assert len(set(t["id"] for t in live)) == len(live)  # reordered, not duplicated


def test_same_seed_injects_the_same_faults_whatever_the_batching() -> None:
    faults = FaultConfig(malformed_rate=0.05, out_of_order_rate=0.05)

    async def observed(batch_limit: int) -> tuple[set[str], set[str], tuple[int, int]]:
        ex = SimExchange("bybit", sim(seed=3, speed=20_000, faults=faults), batch_limit=batch_limit)
        live, _ = await collect_trades(ex, "BTC/USDT", 0.25)
        clock = ex.milliseconds()
        good = [t for t in live if not is_malformed_trade(t, clock)]
        malformed = {t["id"] for t in live if is_malformed_trade(t, clock)}
        # a trade that arrives before an earlier one: the later half of a swapped pair
        swapped = {b["id"] for a, b in zip(good, good[1:], strict=False) if b["timestamp"] < a["timestamp"]}
        ids = [int(t["id"]) for t in good]
        return malformed, swapped, (min(ids), max(ids))

    (bad_a, swap_a, range_a), (bad_b, swap_b, range_b) = run(observed(1000)), run(observed(3))
    lo, hi = max(range_a[0], range_b[0]) + 1, min(range_a[1], range_b[1]) - 1

    def within(ids: set[str], offset: int = 0) -> set[str]:
        # Malformed copies carry the original's id + 5_000_000 within the same hour.
        return {i for i in ids if lo <= int(i) - offset <= hi}

    assert len(within(bad_a, 5_000_000)) > 5 and len(within(swap_a)) > 5
    assert within(bad_a, 5_000_000) == within(bad_b, 5_000_000)
    assert within(swap_a) == within(swap_b)


def test_ticker_funding_and_ohlcv_faults_are_injected_and_counted() -> None:
    faults = FaultConfig(malformed_rate=0.1, duplicate_rate=0.1, out_of_order_rate=0.1)

    async def go() -> tuple[SimExchange, list[dict], list[dict], list[list]]:
        ex = SimExchange("okx", sim(speed=20_000, faults=faults))
        tickers = [await ex.watch_ticker("BTC/USDT:USDT") for _ in range(300)]
        funding = [await ex.watch_funding_rate("BTC/USDT:USDT") for _ in range(300)]
        candles = [row for _ in range(200) for row in await ex.watch_ohlcv("BTC/USDT:USDT")]
        return ex, tickers, funding, candles

    ex, tickers, funding, candles = run(go())
    symbol = "BTC/USDT:USDT"
    for stream, messages in (("tickers", tickers), ("funding", funding)):
        total = sum(ex.faults_injected[(kind, stream, symbol)] for kind in ("malformed", "duplicate", "out_of_order"))
        assert ex.faults_injected[("malformed", stream, symbol)] > 0
        assert ex.faults_injected[("duplicate", stream, symbol)] > 0
        assert ex.faults_injected[("out_of_order", stream, symbol)] > 0
        # Every call returns one message: the good ones plus exactly the injected extras.
        assert len(messages) == ex.emitted[(stream, symbol)] + total
    ohlcv_extra = sum(ex.faults_injected[(k, "ohlcv", symbol)] for k in ("malformed", "duplicate", "out_of_order"))
    assert ex.faults_injected[("malformed", "ohlcv", symbol)] > 0
    assert len(candles) == ex.emitted[("ohlcv", symbol)] + ohlcv_extra


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
    import asyncio

    from fundarb_dagster.core.config import SimConfig

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
