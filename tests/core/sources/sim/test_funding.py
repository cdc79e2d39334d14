"""Simulated funding against the venues' documented formulas written again here, predictions that converge
to the settled rate, and interval changes."""

from __future__ import annotations

import numpy as np
import pytest

from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.sim import VENUES, SimExchange
from fundarb_dagster.core.units import DAY_MS, HOUR_MS, MINUTE_MS

from .common import START_MS, fetch_all_funding, run, sim


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
