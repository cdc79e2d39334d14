"""The simulator's open interest and liquidation prints: consistent with its trades and prices, more prints in
hot regimes, the venue's side convention, served through ccxt's method names."""

from __future__ import annotations

import asyncio

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sources.sim.positioning import OPEN_SHARE
from fundarb_dagster.core.units import HOUR_MS, SECOND_MS

from .common import START


def _exchange(venue: str = "binance", trades_per_s: float = 0.5) -> SimExchange:
    ex = SimExchange(venue, SimConfig(start=START, trades_per_s=trades_per_s), symbols=["BTC/USDT:USDT"])
    asyncio.run(ex.load_markets())
    return ex


def test_open_interest_moves_only_with_trades_and_by_less_than_each_trade():
    ex = _exchange()
    m = ex._m["BTC/USDT:USDT"]  # noqa: SLF001 - the simulated market asked directly
    h = ex.start_ms // HOUR_MS - 5
    chunk = ex.data.chunk(m, h)
    times = chunk.ts[:300].astype(int).tolist()
    at_trade = np.array([ex.positioning.open_interest_amount(m, t) for t in times])
    just_before_next = np.array([ex.positioning.open_interest_amount(m, t - 1) for t in times[1:]])
    np.testing.assert_array_equal(at_trade[:-1], just_before_next)  # nothing moves it between two trades
    moves = np.abs(np.diff(at_trade))
    assert (moves > 0).mean() > 0.9 and (moves <= chunk.amount[1:300] * (OPEN_SHARE + 0.2)).all()


def test_open_interest_is_continuous_across_hours_and_its_value_is_at_the_mark():
    ex = _exchange()
    m = ex._m["BTC/USDT:USDT"]  # noqa: SLF001
    h = ex.start_ms // HOUR_MS - 3
    end_of_hour = ex.positioning.open_interest_amount(m, (h + 1) * HOUR_MS - 1)
    start_of_next = ex.positioning.open_interest_amount(m, (h + 1) * HOUR_MS)
    # the bridge ends on the next hour's level: one hour start's move is one trade's at most
    assert abs(end_of_hour - ex.positioning.level(m, h + 1)) < 1e-6 * end_of_hour + m.lot
    assert abs(start_of_next - end_of_hour) <= float(ex.data.chunk(m, h + 1).amount.max())
    t = h * HOUR_MS + 1_234_567
    structure = ex.positioning.open_interest(m, t)
    chunk = ex.data.chunk(m, h)
    mark = float(chunk.mark[(t // SECOND_MS * SECOND_MS - chunk.start_ms) // SECOND_MS])
    assert structure["timestamp"] == t // SECOND_MS * SECOND_MS
    assert structure["openInterestValue"] == pytest.approx(structure["openInterestAmount"] * mark, abs=0.01)


def test_liquidations_print_at_the_quotes_mostly_with_the_move_and_more_in_hot_regimes():
    ex = _exchange()
    m = ex._m["BTC/USDT:USDT"]  # noqa: SLF001
    world = ex.data.world
    first = ex.start_ms // HOUR_MS - 300
    counts = {True: [], False: []}
    with_move = []
    for h in range(first, first + 300):
        times, prints = ex.positioning.prints(m, h)
        counts[world.hot(m.venue.index, m.a, h)].append(len(prints))
        chunk = ex.data.chunk(m, h)
        for t, p in zip(times.tolist(), prints, strict=True):
            s = (t - chunk.start_ms) // SECOND_MS
            long = p["side"] == "sell"  # binance: the liquidation order's side, a sell closes a long
            assert p["price"] == float(chunk.bid[s] if long else chunk.ask[s]) and p["timestamp"] == t
            fell = chunk.mid[s] < chunk.mid[max(s - 60, 0)]
            with_move.append(long == fell)
            assert p["quoteValue"] == pytest.approx(p["contracts"] * p["contractSize"] * p["price"])
    assert counts[True] and np.mean(counts[True]) > 3 * np.mean(counts[False])
    assert 0.7 < np.mean(with_move) < 0.9  # WITH_MOVE = 0.8 of them on the side the last minute hurt


def test_venues_speak_their_own_side_and_hyperliquid_has_no_liquidation_channel():
    bybit, binance = _exchange("bybit"), _exchange("binance")
    h = bybit.start_ms // HOUR_MS - 10
    for ex, long_word in ((bybit, "buy"), (binance, "sell")):  # bybit: the position's side; binance: the order's
        m = ex._m["BTC/USDT:USDT"]  # noqa: SLF001
        prints = ex.positioning.between(m, h * HOUR_MS, (h + 24) * HOUR_MS)
        assert len(prints) >= 24, ex.id
        for p in prints:
            chunk = ex.data.chunk(m, p["timestamp"] // HOUR_MS)
            at_bid = p["price"] == float(chunk.bid[(p["timestamp"] - chunk.start_ms) // SECOND_MS])
            assert (p["side"] == long_word) == at_bid, ex.id  # a liquidated long sells at the bid
    assert bybit.has["watchLiquidations"] and binance.has["watchLiquidations"]
    assert bybit.has["fetchOpenInterest"] and not bybit.has["watchOpenInterest"]
    hl = SimExchange("hyperliquid", SimConfig(start=START), symbols=["BTC/USDC:USDC"])
    assert not hl.has["watchLiquidations"] and hl.has["fetchOpenInterest"]
    with pytest.raises(ccxt.NotSupported, match="watch_liquidations is not supported"):
        asyncio.run(hl.watch_liquidations("BTC/USDC:USDC"))
    with pytest.raises(ccxt.BadSymbol, match="funding exists for perps only"):
        asyncio.run(binance.fetch_open_interest("BTC/USDT"))
