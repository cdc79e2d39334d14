"""Sweeps equal one backtest per point; walk-forward chooses on each training window alone and stitches the tests."""

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
from fundarb_dagster.core.backtest.sweeps import walk_forward_windows

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


def test_walk_forward_windows_expand_or_roll_and_cover_the_bars_after_the_first_training_window() -> None:
    assert walk_forward_windows(100, 4, "expanding") == [(0, 20, 20, 40), (0, 40, 40, 60), (0, 60, 60, 80),
                                                          (0, 80, 80, 100)]  # fmt: skip
    assert walk_forward_windows(100, 4, "rolling") == [(0, 20, 20, 40), (20, 40, 40, 60), (40, 60, 60, 80),
                                                        (60, 80, 80, 100)]  # fmt: skip
    assert walk_forward_windows(103, 4, "rolling")[-1] == (60, 80, 80, 103)  # the remainder goes to the last test
    assert walk_forward_windows(100, 2, "rolling", train_bars=50, test_bars=10) == [(0, 50, 50, 60), (10, 60, 60, 70)]
    with pytest.raises(ValueError, match="mode: 'nope'"):
        walk_forward_windows(100, 2, "nope")
    with pytest.raises(ValueError, match="folds: 60 windows"):
        walk_forward_windows(100, 60)
    with pytest.raises(ValueError, match="folds: 3 windows of 30 test bars after 20"):
        walk_forward_windows(100, 3, train_bars=20, test_bars=30)


def _closed(pairs, start: int, stop: int):
    """The pairs on bars [start, stop), every position closed on the last bar (plainly, for the checks)."""
    signal = pairs.signal[start:stop].copy()
    signal[-1, :] = np.nan
    return replace(pairs, signal=signal)


WF_AXES = {"enter_apr": [0.08, 0.2], "leverage": [2.0, 6.0], "max_hold_h": [0, 48]}


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_walk_forward_chooses_on_each_training_window_alone(sim_panel: Panel, mode: str) -> None:
    pairs = get_strategy("cash_carry").pairs(sim_panel, {})
    base = BacktestParams()
    wf = walk_forward(sim_panel, pairs, base, WF_AXES, folds=3, mode=mode)
    grid = make_grid(base, WF_AXES)
    for fold in wf["folds"].itertuples(index=False):
        # independent: one full backtest per grid point on the training window only, best Sharpe
        scores = []
        for i in range(len(grid["enter_apr"])):
            p = replace(base, **{f: float(grid[f][i]) for f in WF_AXES})
            window = sim_panel.slice(fold.train_start, fold.train_end)
            scores.append(run_backtest(window, _closed(pairs, fold.train_start, fold.train_end), p).metrics["sharpe"])
        assert fold.chosen == int(np.nanargmax(scores))
        assert fold.train_score == pytest.approx(np.nanmax(scores), rel=1e-9)
    assert len(set(wf["folds"]["chosen"])) > 1  # the choice moves with the window
    # scrambling the data from the second test window on leaves the first two choices alone
    cut = int(wf["folds"]["test_start"].iloc[1])
    other = sim_panel.slice(0, len(sim_panel.ts_ms))
    for name in ("expected_apr", "mid", "funding_cash"):
        values = getattr(other, name).copy()
        values[cut:] = values[cut:][::-1]
        setattr(other, name, values)
    again = walk_forward(other, get_strategy("cash_carry").pairs(other, {}), base, WF_AXES, folds=3, mode=mode)
    assert list(again["folds"]["chosen"][:2]) == list(wf["folds"]["chosen"][:2])
    assert again["folds"]["test_score"].iloc[1] != wf["folds"]["test_score"].iloc[1]


def test_stitched_equity_chains_the_chosen_points_on_their_test_windows(sim_panel: Panel) -> None:
    pairs = get_strategy("perp_perp").pairs(sim_panel, {})
    base = BacktestParams(capital=500_000.0)
    wf = walk_forward(sim_panel, pairs, base, WF_AXES, folds=4, mode="rolling")
    grid = make_grid(base, WF_AXES)
    capital, expected = base.capital, []
    for fold in wf["folds"].itertuples(index=False):
        p = replace(base, **{f: float(grid[f][fold.chosen]) for f in WF_AXES})
        r = run_backtest(
            sim_panel.slice(fold.test_start, fold.test_end), _closed(pairs, fold.test_start, fold.test_end), p
        )
        assert not r.arrays["A"][0][-1].any()  # flat at the end of every test window
        assert fold.test_score == pytest.approx(r.metrics["sharpe"], rel=1e-9, nan_ok=True)
        curve = capital * r.equity["equity"].to_numpy() / base.capital
        expected.append(curve)
        capital = curve[-1]
    stitched = wf["stitched"]
    np.testing.assert_allclose(stitched["equity"], np.concatenate(expected), rtol=1e-9)
    assert list(stitched["ts_ms"]) == list(sim_panel.ts_ms[int(wf["folds"]["test_start"].iloc[0]) :])
    assert wf["stitched_metrics"]["total_return"] == pytest.approx(capital / expected[0][0] - 1, rel=1e-9)
    test = wf["test"]
    assert len(test) == 4 * len(grid["enter_apr"]) and set(test["fold"]) == {0, 1, 2, 3}


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
