"""Sizing by capacity (core/backtest/sizing.py): a pair is sized at the capacity of its captured books at entry
when the capital share is larger, at the capital share when it is smaller, and evenly where no book exists; the
P&L at that size is computed independently; `even` is the even split whatever caps the pairs carry.

The books are test_capacity's closed-form ones (mid 100, a bp to sell, a 50,000 USD first ask level at 1 bp then
a deep one at 20 bp) on both legs of a cash-and-carry at 100: the perp (taker 5 bp) and the spot (taker 10 bp).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.engine import make_grid, simulate
from fundarb_dagster.core.backtest.sizing import capacity_caps
from fundarb_dagster.core.capacity import capacity, carry_bps

from ..test_capacity import N1, closed_form, leg
from .test_engine import tiny_panel

FEES_BPS = 2 * (5.0 + 10.0)  # entry and exit of both legs
SHARE, HORIZON_H = 1.0, 168.0
APR = 0.30
CASH = 0.1  # funding per unit the short perp receives at bar 1
BUDGET = SHARE * carry_bps(APR, HORIZON_H)


def _books(*ts_ms: int) -> pd.DataFrame:
    book = leg()
    rows = [
        {"exchange": "binance", "symbol": symbol, "ts_ms": t, "bid_price": list(book.bid_price),
         "bid_size": list(book.bid_size), "ask_price": list(book.ask_price), "ask_size": list(book.ask_size)}
        for symbol in ("X/USDT:USDT", "X/USDT") for t in ts_ms
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _run(capital: float, books: pd.DataFrame, sizing: str = "capacity"):
    panel = tiny_panel([100] * 4, [100] * 4, [APR, APR, 0.0, 0.0], [0.0, CASH, 0.0, 0.0])
    pairs = get_strategy("cash_carry").pairs(panel, {})
    pairs = replace(pairs, size_cap=capacity_caps(panel, pairs, books, "taker", SHARE, HORIZON_H))
    params = BacktestParams(capital=capital, leverage=1.0, enter_apr=0.1, exit_apr=0.02, drawdown_stop=0.0,
                            sizing=sizing)  # fmt: skip
    return panel, pairs, params, run_backtest(panel, pairs, params)


def _by_hand(capital: float, notional: float) -> np.ndarray:
    """Equity per bar holding `notional` per leg from bar 0 to bar 2 at mid 100 (no spread in the panel)."""
    fees = notional * (0.0005 + 0.001)
    funding = notional / 100 * CASH
    return np.array([capital - fees, capital - fees + funding, capital - 2 * fees + funding,
                     capital - 2 * fees + funding])  # fmt: skip


def test_the_pair_is_sized_at_the_books_capacity_when_the_capital_share_is_larger():
    want = closed_form(BUDGET, FEES_BPS)
    assert N1 < want < 500_000  # within the deep level, and below the capital share (1e6 / 2)
    panel, pairs, params, r = _run(1_000_000.0, _books(0))
    # the same rule as opportunities' capacity, at the entry bar; the book stays fresh for an hour
    assert pairs.size_cap[0, 0] == capacity([leg(), leg()], FEES_BPS, BUDGET).notional_usd
    assert pairs.size_cap[0, 0] == pytest.approx(want, rel=1e-9)
    assert np.isfinite(pairs.size_cap[1, 0]) and np.isnan(pairs.size_cap[2:, 0]).all()
    pos = r.positions.iloc[0]
    assert pos["size_source"] == "capacity"
    assert pos["units"] * 100 == pytest.approx(want, rel=1e-12)
    assert pos["capital_unused_usd"] == pytest.approx(1_000_000 - 2 * want, rel=1e-12)
    np.testing.assert_allclose(r.equity["equity"], _by_hand(1_000_000.0, pos["units"] * 100), rtol=0, atol=1e-6)
    assert r.trades["notional_usd"].iloc[0] == pytest.approx(want, rel=1e-12)
    # a sweep point sized by capacity runs the same sizing (the full simulator, without the tables)
    sim = simulate(panel, pairs, make_grid(params), params, detail=False)
    np.testing.assert_allclose(sim["equity"][0], r.equity["equity"], rtol=0, atol=1e-9)


def test_capital_binds_when_its_share_is_smaller_than_the_capacity():
    panel, pairs, params, r = _run(40_000.0, _books(0))  # 20,000 per leg at leverage 1, below ~N1
    assert pairs.size_cap[0, 0] > 20_000
    pos = r.positions.iloc[0]
    assert pos["size_source"] == "capital" and pos["units"] == pytest.approx(200.0, rel=1e-15)
    assert pos["capital_unused_usd"] == 0.0
    np.testing.assert_allclose(r.equity["equity"], _by_hand(40_000.0, 20_000.0), rtol=0, atol=1e-9)


def test_without_a_book_the_even_split_sizes_it_and_says_so():
    stale = _books(-2 * 3_600_000)  # two hours before the entry: too old
    for books in (pd.DataFrame(), stale):
        panel, pairs, params, r = _run(1_000_000.0, books)
        assert np.isnan(pairs.size_cap).all()
        pos = r.positions.iloc[0]
        assert pos["size_source"] == "even" and pos["units"] == pytest.approx(5_000.0)
        even = run_backtest(panel, pairs, replace(params, sizing="even"))
        pd.testing.assert_frame_equal(r.equity, even.equity)


def test_even_sizing_ignores_the_caps_exactly():
    panel, pairs, params, r = _run(1_000_000.0, _books(0), sizing="even")
    plain = run_backtest(panel, replace(pairs, size_cap=None), params)
    pd.testing.assert_frame_equal(r.equity, plain.equity, check_exact=True)
    pd.testing.assert_frame_equal(r.trades, plain.trades, check_exact=True)
    assert list(r.positions["size_source"]) == ["even"] and r.positions["capital_unused_usd"].iloc[0] == 0.0
    assert "size_src" not in r.arrays


def test_a_capacity_of_zero_keeps_the_pair_flat():
    # fees alone (30 bp) above the budget: no size fits, so the episode is not entered
    panel = tiny_panel([100] * 4, [100] * 4, [APR, APR, 0.0, 0.0], [0.0, CASH, 0.0, 0.0])
    pairs = get_strategy("cash_carry").pairs(panel, {})
    caps = capacity_caps(panel, pairs, _books(0), "taker", 0.1, 24.0)  # budget 0.1 x 8.2 bp
    assert caps[0, 0] == 0.0
    r = run_backtest(panel, replace(pairs, size_cap=caps), BacktestParams(capital=1e6, sizing="capacity"))
    assert r.positions.empty and (r.equity["equity"] == 1e6).all()


def test_sizing_is_checked():
    with pytest.raises(ValueError, match="sizing: 'biggest' must be one of"):
        BacktestParams(sizing="biggest")
    with pytest.raises(ValueError, match="units: 2.0 must be 0"):
        BacktestParams(sizing="capacity", units=2.0)
