"""Injected faults (disconnects, stale periods, malformed, duplicate, out-of-order messages) and their counts."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core.config import FaultConfig
from fundarb_dagster.core.sources.sim import FaultPlan, SimExchange
from fundarb_dagster.core.units import DAY_MS, SECOND_MS

from .common import START_MS, collect_trades, fetch_all_trades, run, sim


# -- faults ---------------------------------------------------------------------------------------------
def test_disconnects_raise_network_error_and_every_lost_trade_is_counted() -> None:
    faults = FaultConfig(disconnect_every_s=300)

    async def go() -> tuple[SimExchange, list[dict], int, list[dict]]:
        ex = SimExchange("bybit", sim(speed=30_000, faults=faults))
        key = ("disconnect", "trades", "BTC/USDT")
        live, errors = await collect_trades(ex, "BTC/USDT", 0.4, enough=lambda: ex.faults_injected.get(key, 0) >= 2)
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
        key = ("stale", "trades", "SOL/USDT")
        live, _ = await collect_trades(ex, "SOL/USDT", 0.4, enough=lambda: ex.faults_injected.get(key, 0) >= 2)
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
    symbol = "ETH/USDT:USDT"

    async def go(faults: FaultConfig, kind: str) -> tuple[SimExchange, list[dict]]:
        ex = SimExchange("binance", sim(speed=20_000, faults=faults))
        # 0.3 s of wall, longer on a loaded machine: until more than 20 faults of the kind were injected
        live, _ = await collect_trades(
            ex, symbol, 0.3, enough=lambda: ex.faults_injected.get((kind, "trades", symbol), 0) > 20
        )
        return ex, live

    ex, live = run(go(FaultConfig(malformed_rate=0.02), "malformed"))
    bad = [t for t in live if is_malformed_trade(t, ex.milliseconds())]
    assert len(bad) == ex.faults_injected[("malformed", "trades", symbol)] > 20
    assert len(live) - len(bad) == ex.emitted[("trades", symbol)]
    reasons = {reason for reason, _, _ in ex.malformed_kinds}
    assert reasons == {"price:nan", "price:negative", "missing:amount", "timestamp:future"}
    assert sum(ex.malformed_kinds.values()) == len(bad)

    ex, live = run(go(FaultConfig(duplicate_rate=0.02), "duplicate"))
    counts = Counter(t["id"] for t in live)
    assert sum(n - 1 for n in counts.values()) == ex.faults_injected[("duplicate", "trades", symbol)] > 20

    ex, live = run(go(FaultConfig(out_of_order_rate=0.02), "out_of_order"))
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


async def _book_at(ex: SimExchange, symbol: str, subscribe_ms: int, at_ms: int) -> dict:
    """A `watch_order_book` call subscribing at `subscribe_ms` and answered with the clock standing at `at_ms`."""
    ex.clock.now_ms = subscribe_ms
    call = asyncio.ensure_future(ex.watch_order_book(symbol))
    await asyncio.sleep(0)  # the call subscribes at the pinned time and waits for the book to change
    ex.clock.now_ms = at_ms
    return await call


@pytest.mark.parametrize("every_s", [60.0, 7.3])
def test_a_broken_book_sequence_is_a_lost_change_of_the_book_so_the_rest_book_after_it_is_newer(every_s: float) -> None:
    """On a venue a book's sequence breaks because an update newer than the last good one was lost, so the book
    fetched after the break is newer than the last one streamed. Time pinned at the worst moment, each break's
    own time (the watcher asks again at once and repairs at once): the last book streamed before the break and
    `fetch_order_book` after it differ in nonce and timestamp, also where the period is not whole seconds."""
    symbol = "BTC/USDT:USDT"
    ex = SimExchange("okx", sim(faults=FaultConfig(sequence_every_s=every_s)), symbols=[symbol])
    ex.clock.now_ms = START_MS
    run(ex.load_markets())
    m = ex._m[symbol]  # noqa: SLF001 - the simulated market, to ask the plan for its breaks

    async def around_breaks(n: int) -> list[tuple[int, dict, dict]]:
        out, subscribed = [], START_MS
        for _ in range(n):
            broken, kind = ex.fault_plan.next_break("order_book", m, subscribed)
            assert kind == "sequence"
            streamed = await _book_at(ex, symbol, subscribed, broken)  # the last book before the break
            with pytest.raises(ccxt.InvalidNonce):
                await ex.watch_order_book(symbol)
            out.append((broken, streamed, await ex.fetch_order_book(symbol, 20)))
            subscribed = broken
        return out

    breaks = run(around_breaks(5))
    assert ex.faults_injected[("sequence", "order_book", symbol)] == 5
    for broken, streamed, repaired in breaks:
        assert repaired["nonce"] > streamed["nonce"] and repaired["timestamp"] > streamed["timestamp"]
        assert repaired["bids"] != streamed["bids"][:20]  # another book, not the last one again
        assert broken % SECOND_MS == 0 and streamed["timestamp"] < broken <= repaired["timestamp"]
    apart = np.diff([broken for broken, _, _ in breaks])  # still every `every_s`, give or take the rounding
    assert (np.abs(apart - every_s * 1000) < SECOND_MS).all(), apart


def test_fault_plan_schedule_is_periodic_and_its_windows_agree_with_their_mask() -> None:
    """The FaultPlan alone (no exchange): a disconnect every period, stale windows of the stated length."""
    plan = FaultPlan(FaultConfig(disconnect_every_s=60, stale_every_s=50, stale_duration_s=10), seed=3)
    ex = SimExchange("bybit", sim())
    run(ex.load_markets())
    m = ex._m["BTC/USDT"]
    first = plan.next_disconnect("trades", m, START_MS)
    assert START_MS < first <= START_MS + 60_000
    assert plan.next_disconnect("trades", m, first) == first + 60_000
    stale = plan.stale("trades", m)
    times = np.arange(START_MS, START_MS + 120_000, dtype=np.int64)
    mask = plan.stale_mask(stale, times)
    assert mask.sum() == 2 * 10_000  # two 10 s windows in two 60 s periods
    ends = [plan.stale_end(stale, int(t)) for t in times[::997]]
    assert [e is not None for e in ends] == mask[::997].tolist()
    assert plan.count_stale_windows(stale, START_MS, START_MS + 120_000) == 2
    plan.record("malformed", "trades", "BTC/USDT", "price:nan")
    assert (
        plan.injected[("malformed", "trades", "BTC/USDT")]
        == plan.malformed_kinds[("price:nan", "trades", "BTC/USDT")]
        == 1
    )
