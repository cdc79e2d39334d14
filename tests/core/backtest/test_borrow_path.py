"""A reverse carry is charged the captured borrow rate in force at each bar (point in time), by hand, and both
engines agree on a time-varying rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.engine import make_grid, simulate
from fundarb_dagster.core.backtest.panel import Panel
from fundarb_dagster.core.borrow import borrow_rows
from fundarb_dagster.core.units import HOUR_MS

from .test_engine import tiny_panel

PARAMS = BacktestParams(capital=1000.0, leverage=1.0, enter_apr=0.1, exit_apr=0.02, drawdown_stop=0.0)


def _captured(path: list[tuple[float, int]]) -> pd.DataFrame:
    """Rows of the borrow_rates table for X on binance: (apr, published at ms), quoted as binance does (daily)."""
    return borrow_rows("binance", [{"currency": "X", "rate": apr / 365, "period": 24 * HOUR_MS, "timestamp": ts}
                                   for apr, ts in path])  # fmt: skip


def _reverse_carry(path: list[tuple[float, int]], configured: float | None = None) -> tuple[object, object]:
    # funding -50 % APR for 4 hours then 0: long the perp, short (borrow) the spot from bar 0, exit at bar 4
    panel = tiny_panel([100] * 6, [100] * 6, [-0.5] * 4 + [0.0] * 2, [0.0] * 6)
    pairs = get_strategy("cash_carry").pairs(panel, {"borrow_apr": configured, "borrow_rates": _captured(path)})
    return pairs, run_backtest(panel, pairs, PARAMS)


def test_the_borrow_charged_each_bar_is_the_rate_in_force_at_its_start():
    """10 % from 00:00, 30 % from 02:00, 5 % from 03:30. Held bars 1-4 (5 units x 100 = 500 short spot); bar u is
    charged the rate in force at ts[u-1]: 10, 10, 30, 30 % (05 % was published inside bar 4, after its start)."""
    pairs, r = _reverse_carry([(0.10, 0), (0.30, 2 * HOUR_MS), (0.05, 3 * HOUR_MS + HOUR_MS // 2)])
    assert pairs.borrow_source == ["captured"]
    by_hand = 500 * (0.10 + 0.10 + 0.30 + 0.30) / 8760
    assert r.attribution["borrow"] == pytest.approx(by_hand, rel=1e-12)
    assert list(r.trades["reason"]) == ["entry", "entry", "exit", "exit"]
    assert r.trades["ts"].iloc[-1] == pd.Timestamp(4 * HOUR_MS, unit="ms")


def test_a_rate_too_dear_for_the_carry_closes_the_reverse_side():
    """At 02:00 the rate jumps to 60 %: the carry (50 %) no longer pays for it (exit when -0.5 >= -(0.02 + 0.6)),
    so the pair exits at bar 2, having paid 10 % over bars 1 and 2."""
    _, r = _reverse_carry([(0.10, 0), (0.60, 2 * HOUR_MS)])
    assert r.trades["ts"].iloc[-1] == pd.Timestamp(2 * HOUR_MS, unit="ms")
    assert r.attribution["borrow"] == pytest.approx(500 * (0.10 + 0.10) / 8760, rel=1e-12)


def test_before_the_first_captured_rate_the_configured_one_applies_or_nothing_is_held():
    # captured from 02:00 only: without a configured rate no reverse position before then (entered at bar 2)
    pairs, r = _reverse_carry([(0.20, 2 * HOUR_MS)])
    assert r.trades["ts"].iloc[0] == pd.Timestamp(2 * HOUR_MS, unit="ms")
    assert r.attribution["borrow"] == pytest.approx(500 * (0.20 + 0.20) / 8760, rel=1e-12)
    # with 8 % configured it is held from bar 0, charged 8 % until the captured rate is in force
    pairs, r = _reverse_carry([(0.20, 2 * HOUR_MS)], configured=0.08)
    assert pairs.borrow_source == ["captured+configured"]
    assert r.attribution["borrow"] == pytest.approx(500 * (0.08 + 0.08 + 0.20 + 0.20) / 8760, rel=1e-12)


def test_grid_sharing_path_equals_full_engine_with_a_time_varying_rate(sim_panel: Panel) -> None:
    rng = np.random.default_rng(5)
    spots = [m for m in sim_panel.markets if m.kind == "spot"]
    times = sim_panel.ts_ms[::7]
    rows = pd.concat([borrow_rows(m.exchange, [{"currency": m.underlying, "rate": float(apr), "period": HOUR_MS,
                                                "timestamp": int(t)} for t, apr in
                                               zip(times, rng.uniform(0, 0.5, len(times)) / 8760, strict=True)])
                      for m in spots])  # fmt: skip
    pairs = get_strategy("cash_carry").pairs(sim_panel, {"borrow_apr": 0.08, "borrow_rates": rows})
    assert pairs.borrow_apr.shape == pairs.signal.shape
    base = BacktestParams()
    axes = {"enter_apr": [0.05, 0.15], "exit_apr": [0.0, 0.03], "leverage": [1.0, 3.0, 12.0], "rebalance_h": [0, 5]}
    grid = make_grid(base, axes)
    full = simulate(sim_panel, pairs, grid, base, detail=True)
    fast = simulate(sim_panel, pairs, grid, base, detail=False)
    assert (full["attribution"]["borrow"] > 0).all()
    for key, value in full["attribution"].items():
        np.testing.assert_allclose(fast["attribution"][key], value, rtol=0, atol=1e-9 * base.capital, err_msg=key)
    np.testing.assert_allclose(fast["equity"], full["equity"], rtol=0, atol=1e-9 * base.capital)
