"""Backtest slippage walked on the last captured book before each trade, by hand; the flat model elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.book_costs import leg_notionals, with_book_slippage
from fundarb_dagster.core.units import HOUR_MS

from .test_engine import tiny_panel

PARAMS = BacktestParams(capital=1000.0, leverage=1.0, enter_apr=0.1, exit_apr=0.02, drawdown_stop=0.0)
PERP = "X/USDT:USDT"


def _walk_by_hand(levels: list[tuple[float, float]], notional: float) -> float:
    """The VWAP of taking `notional` (quote) from levels (price, size) best first, plainly."""
    left, units = notional, 0.0
    for price, size in levels:
        take = min(left, price * size)
        units += take / price
        left -= take
        if left <= 0:
            break
    return notional / units


def _book(ts_ms: int) -> dict:
    # mid 100; the first level holds 200 USD a side, the second plenty
    return {"exchange": "binance", "symbol": PERP, "ts_ms": ts_ms, "bid_price": [99.9, 99.7], "bid_size": [2.0, 10.0],
            "ask_price": [100.1, 100.3], "ask_size": [2.0, 10.0]}  # fmt: skip


def test_the_entry_walks_the_book_before_it_and_the_exit_without_a_fresh_book_is_flat():
    """Capital 1000, leverage 1: 500 per leg. The entry at bar 0 (10:00) walks the perp's book of 09:59:59 for
    500; the exit at bar 2 (12:00) has only a book 1 ms after it and one 2 h before: the flat model (0 here).
    Bar 3 (13:00, no trade) would walk the 12:00:00.001 book; bar 1's book (09:59:59) is over an hour old."""
    panel = tiny_panel([100] * 4, [100] * 4, [0.5, 0.5, 0.0, 0.0], [0.0] * 4)
    panel = type(panel)(**{**panel.__dict__, "ts_ms": panel.ts_ms + 10 * HOUR_MS})  # bars at 10:00 .. 13:00
    t0, t2 = int(panel.ts_ms[0]), int(panel.ts_ms[2])
    books = pd.DataFrame([_book(t0 - 1000), _book(t2 + 1)])
    pairs = get_strategy("cash_carry").pairs(panel, {})
    notionals = leg_notionals(panel, pairs, PARAMS)
    assert notionals == {0: 500.0, 1: 500.0}
    walked, sources = with_book_slippage(panel, books, notionals)
    assert sources == {f"binance {PERP}": "book 2/4 bars", "binance X/USDT": "book 0/4 bars"}
    buy = _walk_by_hand([(100.1, 2.0), (100.3, 10.0)], 500) / 100 - 1
    sell = 1 - _walk_by_hand([(99.9, 2.0), (99.7, 10.0)], 500) / 100
    assert walked.half_spread[0, 0] == pytest.approx((buy + sell) / 2, rel=1e-12)
    np.testing.assert_array_equal(walked.half_spread[1:3, 0], panel.half_spread[1:3, 0])  # the flat model
    r = run_backtest(walked, pairs, PARAMS)
    # the perp's entry trades 5 units at 100 and pays the walked cost; the spot and the exit pay nothing
    assert r.attribution["slippage"] == pytest.approx(500 * (buy + sell) / 2, rel=1e-12)
    assert r.attribution["slippage"] == pytest.approx(1.1, abs=1e-5)  # ~ 22 bps on 500


def test_a_book_too_thin_for_the_size_leaves_the_flat_model():
    panel = tiny_panel([100] * 4, [100] * 4, [0.5, 0.5, 0.0, 0.0], [0.0] * 4)
    pairs = get_strategy("cash_carry").pairs(panel, {})
    thin = {**_book(0), "ask_size": [1.0, 1.0]}  # 200 USD on the ask side: not 500
    walked, sources = with_book_slippage(panel, pd.DataFrame([thin]), leg_notionals(panel, pairs, PARAMS))
    assert sources[f"binance {PERP}"] == "book 0/4 bars"
    np.testing.assert_array_equal(walked.half_spread, panel.half_spread)
