"""The simulator's spot borrow rates: ccxt's methods and structures, paging, time variation, hot regimes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core.borrow import borrow_rows
from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.history import fetch_borrow_pages
from fundarb_dagster.core.sources.sim import VENUES, SimExchange
from fundarb_dagster.core.sources.sim.borrow import HOT_BORROW, SimBorrow
from fundarb_dagster.core.sources.sim.venues import ASSET_INDEX
from fundarb_dagster.core.sources.sim.world import LazyWorld
from fundarb_dagster.core.units import DAY_MS, HOUR_MS

NOW = "2026-11-02T00:00:00Z"


def _sim(venue: str, seed: int = 7) -> SimExchange:
    return SimExchange(venue, SimConfig(seed=seed, start="2026-11-01T00:00:00Z", now=NOW))


def test_history_is_hourly_ccxt_structures_and_pages_like_one_call():
    ex = _sim("binance")
    now = ex.milliseconds()
    since = now - 30 * HOUR_MS
    whole = asyncio.run(ex.fetch_borrow_rate_history("SOL", since=since, limit=1000))
    assert [e["timestamp"] for e in whole] == list(range(since, now + 1, HOUR_MS))
    first = whole[0]
    assert set(first) == {"currency", "rate", "period", "timestamp", "datetime", "info"}
    assert (first["currency"], first["period"]) == ("SOL", DAY_MS)  # binance quotes a daily rate, as ccxt parses it
    paged = asyncio.run(fetch_borrow_pages(ex, "SOL", since, now + 1, 7))
    assert paged == whole
    latest = asyncio.run(ex.fetch_borrow_rate_history("SOL", limit=3))
    assert latest == whole[-3:]
    assert asyncio.run(ex.fetch_cross_borrow_rate("SOL")) == whole[-1]
    rates = asyncio.run(ex.fetch_cross_borrow_rates())
    assert set(rates) == {"USDT", *VENUES["binance"].spot_assets} and rates["SOL"] == whole[-1]


def test_rates_vary_in_time_are_seeded_and_plausible():
    rows = borrow_rows("okx", asyncio.run(_sim("okx").fetch_borrow_rate_history("BTC", since=None, limit=1000)))
    again = borrow_rows("okx", asyncio.run(_sim("okx").fetch_borrow_rate_history("BTC", since=None, limit=1000)))
    other = borrow_rows("okx", asyncio.run(_sim("okx", seed=8).fetch_borrow_rate_history("BTC", limit=1000)))
    assert rows.equals(again) and not rows["borrow_apr"].equals(other["borrow_apr"])
    apr = rows["borrow_apr"]
    assert rows["period_h"].eq(1.0).all()
    assert apr.nunique() > 900 and apr.min() > 0.005 and apr.max() < 0.5  # drifts hour to hour, stays plausible
    # interpolated daily draws: no hourly jumps but a hot regime starting or ending (x3 or /3)
    steps = np.abs(np.log(apr).diff().dropna())
    jumps = steps[steps > 0.05]
    assert len(jumps) < 10 and np.allclose(jumps, np.log(3.0), atol=0.05)


def test_a_hot_regime_triples_the_rate():
    """bybit SUI runs hot from 3 days before its interval change (6 days before the start) to 5 days after; the
    same venue without perps (never hot) gives the calm rate: the ratio is exactly HOT_BORROW in hot hours."""
    spec = VENUES["bybit"]
    world = LazyWorld(7, SimConfig().start_ms)
    hot, calm = SimBorrow(spec, 7, world), SimBorrow(replace(spec, perp_assets=()), 7, world)
    start_h = SimConfig().start_ms // HOUR_MS
    hours = range(start_h - 20 * 24, start_h)
    ratio = np.array([hot.apr("SUI", h) / calm.apr("SUI", h) for h in hours])
    is_hot = np.array([world.get().hot(spec.index, ASSET_INDEX["SUI"], h) for h in hours])
    assert is_hot.sum() >= 7 * 24
    np.testing.assert_allclose(ratio[is_hot], HOT_BORROW, rtol=1e-12)
    np.testing.assert_allclose(ratio[~is_hot], 1.0, rtol=1e-12)


def test_a_venue_that_lends_nothing_says_so_like_ccxt():
    ex = _sim("hyperliquid")
    assert not ex.has["fetchBorrowRateHistory"] and not ex.has["fetchCrossBorrowRate"]
    with pytest.raises(ccxt.NotSupported, match="no spot-margin borrowing"):
        asyncio.run(ex.fetch_borrow_rate_history("BTC"))
    # ccxt deprecated fetchBorrowRate for every venue: the sim raises what ccxt's base class raises
    with pytest.raises(ccxt.NotSupported, match="fetchBorrowRate is deprecated"):
        asyncio.run(_sim("binance").fetch_borrow_rate("BTC", 1.0))
    with pytest.raises(ccxt.BadRequest, match="code: 'XYZ' is not lent"):
        asyncio.run(_sim("binance").fetch_cross_borrow_rate("XYZ"))


def test_real_ccxt_classes_declare_the_same_borrow_methods():
    """The live source asks ccxt's `has` (describe()) before calling: binance/bybit/okx lend, hyperliquid not."""
    for venue, lends in (("binance", True), ("bybit", True), ("okx", True), ("hyperliquid", False)):
        has = getattr(ccxt, venue)().has
        assert bool(has.get("fetchBorrowRateHistory")) == lends == _sim(venue).has["fetchBorrowRateHistory"], venue
