"""The fused simulator (`run_backtest`) against the vectorized engine and its tables (`simulate` with detail=True,
records.trades / records.positions): every table equal figure for figure, every per-bar array equal, on the real
fixtures and on random pairs with leverage tiers, time-varying borrow and reverse costs, dated fees, the bps
slippage model where quotes are missing, sizing by capacity, fixed units, irregular funding settlements, maker
execution, risk stops, liquidations and the drawdown stop."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.engine import GRID_FIELDS, BacktestResult, backtest_result, simulate
from fundarb_dagster.core.backtest.fused import block_step
from fundarb_dagster.core.backtest.panel import Panel, with_tiers
from fundarb_dagster.core.backtest.records import positions, trades
from fundarb_dagster.core.backtest.strategies import PairSet
from fundarb_dagster.core.backtest.synthetic import synthetic_panel

from .conftest import xrp_panel

ARRAYS = ("A", "H", "D", "q", "xa", "xb", "pnl", "liq_a", "liq_b", "stopped", "halt")
LAST_ROW = ("e_a", "e_b", "seg")  # the fused simulator keeps the open book's entry prices and resize bars only


def vectorized_backtest(panel: Panel, pairs: PairSet, params: BacktestParams) -> BacktestResult:
    """The slow, obvious path: the vectorized full simulator's per-bar arrays and the tables found in them."""
    grid = {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}
    sim = simulate(panel, pairs, grid, params, detail=True)
    return backtest_result(panel, pairs, params, "", sim, trades(panel, pairs, sim), positions(panel, pairs, sim))


def assert_same_backtest(panel: Panel, pairs: PairSet, params: BacktestParams) -> BacktestResult:
    got, ref = run_backtest(panel, pairs, params), vectorized_backtest(panel, pairs, params)
    for name in ("equity", "trades", "positions", "open_positions"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(ref, name), check_exact=True, obj=name)
    names = ARRAYS + (("size_src", "unused") if "size_src" in ref.arrays else ())
    assert ("size_src" in got.arrays) == ("size_src" in ref.arrays)
    for name in names:
        np.testing.assert_array_equal(got.arrays[name], ref.arrays[name], err_msg=name)
    for name in LAST_ROW:
        np.testing.assert_array_equal(got.arrays[name][0][-1], ref.arrays[name][0][-1], err_msg=name)
    for name in ("in_market", "gross_exposure", "entries", "held_pair_bars", "liquidations", "stops"):
        np.testing.assert_array_equal(got.arrays[name], ref.arrays[name], err_msg=name)
    # run totals add the per-bar sums, the vectorized engine adds blocks of cells: the same to the last bits
    assert got.attribution.keys() == ref.attribution.keys()
    for key, value in ref.attribution.items():
        assert got.attribution[key] == pytest.approx(value, rel=1e-12, abs=1e-9 * params.capital), key
    assert got.metrics.keys() == ref.metrics.keys()
    for key, value in ref.metrics.items():
        assert got.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    return got


def random_case(seed: int) -> tuple[Panel, PairSet, BacktestParams]:
    """A seeded random panel and strategy run with every optional input the engine takes."""
    rng = np.random.default_rng(seed)
    with_spot = bool(seed % 2)
    panel = synthetic_panel(int(rng.integers(100, 400)), ("BTC", "ETH", "SOL")[: 2 + seed % 2], seed=seed,
                            vol_per_hour=float(rng.uniform(0.005, 0.03)), with_spot=with_spot)  # fmt: skip
    T, M = panel.shape
    # irregular settlements: funding booked at random bars, some negative
    cash = np.where(rng.random((T, M)) < 0.15, rng.normal(0, 0.02, (T, M)) * panel.ref, 0.0)
    cash[:, [not m.is_perp for m in panel.markets]] = 0.0
    panel = replace(panel, funding_cash=cash)
    if rng.random() < 0.7:  # leverage tiers on most perps
        rows = []
        for m in panel.markets:
            if m.is_perp and rng.random() < 0.8:
                edges = np.sort(rng.uniform(1e3, 2e5, 3))
                mmr = np.sort(rng.uniform(0.004, 0.1, 4))
                lo = np.concatenate([[0.0], edges])
                hi = np.concatenate([edges, [1e12]])
                amount = np.concatenate([[0.0], np.cumsum(edges * np.diff(mmr))])  # continuous in the notional
                rows.append(pd.DataFrame({"exchange": m.exchange, "symbol": m.symbol, "min_notional": lo,
                                          "max_notional": hi, "mmr": mmr, "maintenance_amount": amount}))  # fmt: skip
        if rows:
            panel, _ = with_tiers(panel, pd.concat(rows, ignore_index=True))
    if rng.random() < 0.5:  # dated fees: changing at a random bar
        change = int(rng.integers(1, T))
        taker = np.tile([m.taker_fee for m in panel.markets], (T, 1))
        taker[change:] *= 0.5
        maker = np.tile([m.maker_fee for m in panel.markets], (T, 1))
        maker[change:] *= 2.0
        panel = replace(panel, taker_fee_t=taker, maker_fee_t=maker)
    pairs = get_strategy("cash_carry" if with_spot else "perp_perp").pairs(panel, {"borrow_apr": 0.05})
    P = len(pairs.names)
    if rng.random() < 0.5:  # time-varying borrow and reverse costs
        pairs = replace(pairs, borrow_apr=rng.uniform(0.0, 0.3, (T, P)), reverse_cost_apr=rng.uniform(0, 0.2, (T, P)),
                        allow_reverse=rng.random(P) < 0.7)  # fmt: skip
    sizing = "even"
    if rng.random() < 0.4:  # sizing by capacity: caps below and above the even notional, NaN where no book, some 0
        cap = rng.choice([np.nan, 0.0, 1e3, 5e4, 1e7], size=(T, P), p=[0.3, 0.1, 0.2, 0.2, 0.2])
        pairs = replace(pairs, size_cap=cap)
        sizing = "capacity"
    params = BacktestParams(
        enter_apr=float(rng.uniform(0.02, 0.15)),
        exit_apr=float(rng.uniform(0.0, 0.02)),
        max_hold_h=float(rng.choice([0.0, 24.0, 100.0])),
        leverage=float(rng.choice([1.0, 3.0, 10.0, 25.0])),
        rebalance_h=float(rng.choice([0.0, 12.0, 48.0])),
        stop_distance=float(rng.choice([0.0, 0.02, 0.05])),
        drawdown_stop=float(rng.choice([0.0, 0.0, 0.01, 0.05])),
        capital=float(rng.choice([1e4, 1e6])),
        execution=str(rng.choice(["taker", "maker"])),
        slippage_bps=float(rng.uniform(0, 5)),
        units=float(rng.choice([0.0, 0.0, 0.7])) if sizing == "even" else 0.0,
        sizing=sizing,
    )
    return panel, pairs, params


@pytest.mark.parametrize("seed", range(40))
def test_random_pairs_give_the_vectorized_engines_tables(seed):
    assert_same_backtest(*random_case(seed))


def test_the_random_cases_reach_every_path():
    """The 40 seeds above liquidate, stop, halt, flip, size by capacity and run into tiers, or they prove little."""
    seen: set[str] = set()
    for seed in range(40):
        panel, pairs, params = random_case(seed)
        r = run_backtest(panel, pairs, params)
        seen |= set(r.trades["reason"]) | set(r.positions["exit_reason"]) | set(r.positions["size_source"])
        seen |= {"tiers"} if panel.tiers and r.metrics["liquidations"] else set()
        seen |= {"dated"} if panel.taker_fee_t is not None else set()
        seen |= {"borrow"} if r.attribution["borrow"] > 0 else set()
    expected = {"entry", "exit", "flip", "max_hold", "stop", "liquidation", "drawdown", "rebalance", "capacity",
                "capital", "even", "tiers", "dated", "borrow"}  # fmt: skip
    assert expected <= seen, expected - seen


@pytest.mark.parametrize(
    "params",
    [
        BacktestParams(),
        BacktestParams(leverage=10, max_hold_h=240, rebalance_h=48, stop_distance=0.02),
        BacktestParams(execution="maker", leverage=20, enter_apr=0.05, exit_apr=0.0, drawdown_stop=0.03),
    ],
)
def test_the_fixtures_give_the_vectorized_engines_tables(fixtures_dir, funding_panel, params):
    assert_same_backtest(funding_panel, get_strategy("perp_perp").pairs(funding_panel, {}), params)
    xrp = xrp_panel(fixtures_dir)
    assert_same_backtest(xrp, get_strategy("cash_carry").pairs(xrp, {"borrow_apr": 0.1}), params)


def test_many_pairs_add_up_in_the_vectorized_engines_blocks():
    """Enough bars that the vectorized engine sums pairs in several blocks: the equity still matches to the bit."""
    panel = synthetic_panel(24 * 300, ("A", "B", "C", "D"), with_spot=False, seed=3)
    pairs = get_strategy("perp_perp").pairs(panel, {})
    assert block_step(len(panel.ts_ms)) < len(pairs.names)  # more pairs than one block holds
    r = assert_same_backtest(panel, pairs, BacktestParams(leverage=10, stop_distance=0.02, rebalance_h=24))
    assert len(r.trades) > 100


def test_a_run_with_more_rows_than_preallocated_is_repeated_with_room_for_all(monkeypatch):
    """The loop preallocates a share of the cells for trade and position rows; past that it counts them and the run
    is repeated with room for exactly as many: the same tables."""
    from fundarb_dagster.core.backtest import fused

    panel, pairs, params = random_case(4)
    expected = run_backtest(panel, pairs, params)
    assert len(expected.trades) > 16 and len(expected.positions) > 16
    monkeypatch.setattr(fused, "TRADE_ROWS_PER_CELL", 0.0)
    monkeypatch.setattr(fused, "POSITION_ROWS_PER_CELL", 0.0)
    got = assert_same_backtest(panel, pairs, params)
    pd.testing.assert_frame_equal(got.trades, expected.trades, check_exact=True)
    pd.testing.assert_frame_equal(got.positions, expected.positions, check_exact=True)
