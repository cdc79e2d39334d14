"""Sweeps equal one backtest per point; walk-forward chooses on the first part only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fundarb_dagster.core.backtest import (
    BacktestParams,
    get_strategy,
    make_grid,
    run_backtest,
    simulate,
    sweep,
    walk_forward,
)
from fundarb_dagster.core.backtest import sweeps as sweep_mod
from fundarb_dagster.core.backtest.panel import Panel

AXES = {"enter_apr": [0.08, 0.15, 0.3], "exit_apr": [0.0, 0.04], "leverage": [2.0, 12.0], "max_hold_h": [0, 72]}


def test_sweep_rows_equal_individual_backtests(sim_panel: Panel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_mod, "CELLS_PER_CHUNK", 5 * sim_panel.shape[0] * 4)  # force several chunks
    pairs = get_strategy("perp_perp").pairs(sim_panel, {})
    base = BacktestParams(rebalance_h=24, stop_distance=0.02)
    table = sweep(sim_panel, pairs, base, AXES)
    assert len(table) == 24
    for i in (0, 7, 13, 23):
        row = table.iloc[i]
        p = replace(base, **{k: float(row[k]) for k in AXES})
        r = run_backtest(sim_panel, pairs, p)
        for metric in ("total_return", "sharpe", "max_drawdown", "trade_count", "turnover"):
            assert row[metric] == pytest.approx(r.metrics[metric], rel=1e-9, nan_ok=True), metric
        assert row["final_equity"] == pytest.approx(r.equity["equity"].iloc[-1], rel=1e-12)
        assert row["funding_pnl"] == pytest.approx(r.attribution["funding"], rel=1e-9)


def test_grid_rejects_unknown_axis_and_bad_values() -> None:
    with pytest.raises(ValueError, match="grid: 'nope'"):
        make_grid(BacktestParams(), {"nope": [1]})
    with pytest.raises(ValueError, match="enter_apr"):
        make_grid(BacktestParams(), {"enter_apr": [0.01], "exit_apr": [0.05]})


def test_walk_forward_choice_ignores_the_test_part(sim_panel: Panel) -> None:
    pairs = get_strategy("cash_carry").pairs(sim_panel, {})
    axes = {"enter_apr": [0.08, 0.2], "leverage": [2.0, 6.0]}
    wf = walk_forward(sim_panel, pairs, BacktestParams(), axes, train_fraction=0.5)
    split = int(round(len(sim_panel.ts_ms) * 0.5))
    assert wf["split_ts_ms"] == sim_panel.ts_ms[split]
    best = wf["train"]["sharpe"].idxmax()
    assert wf["chosen"]["enter_apr"] == wf["train"].loc[best, "enter_apr"]
    # scramble the test part: the choice stays, the reported test score changes
    other = sim_panel.slice(0, len(sim_panel.ts_ms))
    other.expected_apr = other.expected_apr.copy()
    other.expected_apr[split:] = other.expected_apr[split:][::-1]
    wf2 = walk_forward(other, get_strategy("cash_carry").pairs(other, {}), BacktestParams(), axes, train_fraction=0.5)
    assert wf2["chosen"] == wf["chosen"]
    assert not np.isclose(wf2["test_score"], wf["test_score"])
    with pytest.raises(ValueError, match="train_fraction"):
        walk_forward(sim_panel, pairs, BacktestParams(), axes, train_fraction=1.5)


@pytest.mark.parametrize("strategy", ["cash_carry", "perp_perp"])
@pytest.mark.parametrize("stop,drawdown", [(0.0, [0.0]), (0.02, [0.0]), (0.0, [0.0, 0.03, 0.1])])
def test_grid_sharing_path_equals_full_engine(sim_panel: Panel, strategy: str, stop: float, drawdown: list) -> None:
    """simulate(detail=False) shares the never-stopped path across leverages and re-prices only the cells around
    events; it must give the full engine's aggregates on a grid with liquidations, stops, rebalances, holding
    limits, reverse carry, borrow and drawdown stops (rule 6)."""
    pairs = get_strategy(strategy).pairs(sim_panel, {"borrow_apr": 0.08})
    base = BacktestParams(stop_distance=stop)
    axes = {"enter_apr": [0.05, 0.15], "exit_apr": [0.0, 0.03], "leverage": [1.0, 3.0, 12.0, 25.0],
            "max_hold_h": [0, 30], "rebalance_h": [0, 5], "drawdown_stop": drawdown}  # fmt: skip
    grid = make_grid(base, axes)
    full = simulate(sim_panel, pairs, grid, base, detail=True)
    fast = simulate(sim_panel, pairs, grid, base, detail=False)
    tol = 1e-9 * base.capital
    np.testing.assert_allclose(fast["equity"], full["equity"], rtol=0, atol=tol)
    for key, value in full["attribution"].items():
        np.testing.assert_allclose(fast["attribution"][key], value, rtol=0, atol=tol, err_msg=key)
    np.testing.assert_allclose(fast["traded_notional"], full["traded_notional"], rtol=1e-12)
    for key in ("in_market", "entries", "held_pair_bars", "liquidations", "stops", "halt"):
        np.testing.assert_array_equal(fast[key], full[key], err_msg=key)
    if len(drawdown) > 1:  # the stops fire, at different bars, on points of each limit
        T = len(sim_panel.ts_ms)
        for limit in drawdown[1:]:
            assert (full["halt"][grid["drawdown_stop"] == limit] < T).sum() > 4
        assert len(np.unique(full["halt"])) > 5
    assert full["liquidations"].sum() > 0
    assert (full["stops"].sum() > 0) == (stop > 0)
    assert len(np.unique(full["liquidations"])) > 1  # the leverage changes which points are liquidated
