"""Capacity on a synthetic book with a closed-form answer, its edges, and capacity in the ranking.

The book of each leg (mid 100): bids one deep level at 100 x (1 - a), so selling any size costs exactly a bp;
asks a first level at p1 = 100 x (1 + a) holding N1 USD, then a deep one at p2 = 100 x (1 + b). Buying Q > N1
costs (Q / (N1 / p1 + (Q - N1) / p2) / mid - 1) x 1e4 bp. For two such legs the round trip is
fees + 2 (a + buy(Q)); it equals the budget B where buy(Q) = x = (B - fees) / 2 - a, i.e. at

    Q* = P N1 (1/p1 - 1/p2) / (1 - P/p2),   P = mid (1 + x / 1e4)   (for a < x < b).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import opportunities as o
from fundarb_dagster.core.capacity import LegBook, LegBooks, capacities, capacity, carry_bps, round_trip_bps

MID, A, B, N1 = 100.0, 1.0, 20.0, 50_000.0
P1, P2 = MID * (1 + A / 1e4), MID * (1 + B / 1e4)
DEEP = 1e9  # base units: never the limit here


def leg() -> LegBook:
    bid_price = np.array([MID * (1 - A / 1e4), np.nan])
    bid_size = np.array([DEEP, np.nan])
    return LegBook(bid_price, bid_size, np.array([P1, P2]), np.array([N1 / P1, 5_000_000 / P2]))


def closed_form(budget: float, fees: float) -> float:
    x = (budget - fees) / 2 - A
    assert A < x < B
    p = MID * (1 + x / 1e4)
    return p * N1 * (1 / P1 - 1 / P2) / (1 - p / P2)


def test_capacity_equals_the_closed_form() -> None:
    fees = 8.0
    budget = 0.5 * carry_bps(0.30, 168)  # half the carry of 30 % APR over a week: 28.77 bp
    assert budget == pytest.approx(0.5 * 0.30 * 168 / 8760 * 1e4)
    got = capacity([leg(), leg()], fees, budget)
    want = closed_form(budget, fees)
    assert N1 < want < 5_000_000 and not got.capped
    assert got.notional_usd == pytest.approx(want, rel=1e-9)
    assert got.cost_bps == pytest.approx(budget, rel=1e-9)
    # the round trip at the top level's size is the flat model: fees + 2 x 2 half-spreads of a bp
    assert round_trip_bps([leg(), leg()], fees, N1 / 2) == pytest.approx(fees + 4 * A)


def test_capacity_at_its_edges() -> None:
    fees = 8.0
    # a budget the top of the book already exceeds: nothing fits
    nothing = capacity([leg(), leg()], fees, fees + 4 * A - 0.01)
    assert nothing.notional_usd == 0.0 and math.isnan(nothing.cost_bps)
    # a budget exactly at the top's cost: the first level's whole notional, no more
    top = capacity([leg(), leg()], fees, fees + 4 * A + 1e-9)
    assert top.notional_usd == pytest.approx(N1, rel=1e-6)
    # a budget beyond what the captured depth costs: the depth itself, marked as a lower bound
    deep = capacity([leg(), leg()], fees, 500.0)
    assert deep.capped and deep.notional_usd == pytest.approx(N1 + 5_000_000)
    assert capacity([leg(), leg()], fees, 0.0).notional_usd == 0.0  # no carry, no capacity


def _hourly(values: np.ndarray, *keys: tuple[str, str]) -> pd.DataFrame:
    ts = pd.date_range("2026-01-01", periods=len(values), freq="h")
    return pd.concat(
        [pd.DataFrame({"exchange": e, "symbol": s, "ts": ts, "funding_apr": values}) for e, s in keys],
        ignore_index=True,
    )


def test_the_ranking_walks_the_books_where_both_legs_have_one_and_says_so() -> None:
    n = 100
    hourly = _hourly(np.full(n, 0.30), ("bybit", "BTC/USDT:USDT"), ("okx", "BTC/USDT:USDT"))
    latest = pd.DataFrame(
        {
            "exchange": ["bybit", "okx"],
            "symbol": ["BTC/USDT:USDT", "BTC/USDT:USDT"],
            "spot_symbol": ["BTC/USDT", "BTC/USDT"],
            "perp_half_spread_bps": [1.0, 1.0],
            "spot_half_spread_bps": [1.0, 1.0],
        }
    )
    fees = o.FeeSchedule({"bybit": {"spot": 2.0, "swap": 2.0}, "okx": {"spot": 2.0, "swap": 2.0}})
    books = {("bybit", "BTC/USDT"): leg(), ("bybit", "BTC/USDT:USDT"): leg()}  # okx captured no book
    rule = o.CapacityRule(share=0.5, trade_notional_usd=10_000)
    out = o.rank_opportunities(hourly, latest, fees, 168, pd.Timestamp("2026-01-05"), books=books, rule=rule)
    cnc = out[out.strategy == "cash_carry"].set_index("short_exchange")
    bybit, okx = cnc.loc["bybit"], cnc.loc["okx"]
    assert bybit.cost_source == "book" and okx.cost_source == "flat"
    # both at the top level's size: the walked round trip is the fees plus four half-spreads, like the flat one
    assert bybit.entry_cost_bps == pytest.approx(8.0 + 4 * A) and okx.entry_cost_bps == pytest.approx(8.0 + 4.0)
    budget = 0.5 * carry_bps(bybit.expected_carry_apr, 168)
    assert bybit.capacity_usd == pytest.approx(closed_form(budget, 8.0), rel=1e-9)
    assert bybit.capacity_net_carry_apr == pytest.approx(bybit.expected_carry_apr - budget / 1e4 * 8760 / 168)
    assert not bybit.capacity_capped
    assert math.isnan(okx.capacity_usd) and math.isnan(okx.capacity_net_carry_apr)
    # perp-perp bybit/okx: okx has no book, so the flat model
    assert (out[out.strategy == "perp_perp"]["cost_source"] == "flat").all()


def test_capacities_solve_every_row_at_its_own_budget() -> None:
    # rows: the closed form, nothing fits (below the top's cost), the whole depth (capped), no carry
    fees = 8.0
    budgets = np.array([0.5 * carry_bps(0.30, 168), fees + 4 * A - 0.01, 500.0, 0.0])
    books = LegBooks.of(leg()).rows(np.zeros(len(budgets), dtype=int))
    notional, cost, capped = capacities([books, books], np.full(len(budgets), fees), budgets)
    assert notional[0] == pytest.approx(closed_form(budgets[0], fees), rel=1e-9) and not capped[0]
    assert notional[1] == 0.0 and math.isnan(cost[1])
    assert capped[2] and notional[2] == pytest.approx(N1 + 5_000_000)
    assert notional[3] == 0.0
    for i, budget in enumerate(budgets):  # each row is the one-trade answer, to the bit
        assert notional[i] == capacity([leg(), leg()], fees, budget).notional_usd
