"""core.backtest.records: the trade and position tables (built through Arrow, from the fused simulator's rows)
equal the obvious pandas construction (reference_records.py) on the vectorized engine's per-bar arrays, row for
row and dtype for dtype, on runs with every kind of exit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest, simulate
from fundarb_dagster.core.backtest.engine import GRID_FIELDS
from fundarb_dagster.core.backtest.fused import run_fused
from fundarb_dagster.core.backtest.records import name_rank, position_table
from fundarb_dagster.core.backtest.synthetic import synthetic_panel
from tests.core.backtest.reference_records import reference_positions, reference_trades

CASES = {
    "stops_and_liquidations": BacktestParams(
        enter_apr=0.05, exit_apr=0.0, leverage=20, max_hold_h=100, rebalance_h=24, stop_distance=0.01
    ),
    "drawdown_halt": BacktestParams(enter_apr=0.05, exit_apr=0.02, leverage=10, drawdown_stop=0.02),
    "plain": BacktestParams(enter_apr=0.1, exit_apr=0.02, leverage=3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tables_equal_the_obvious_pandas_construction(case):
    panel = synthetic_panel(24 * 40, ("C00", "C01", "C02"), with_spot=False, seed=4)
    pairs = get_strategy("perp_perp").pairs(panel, {})
    result = run_backtest(panel, pairs, CASES[case])
    params = CASES[case]
    sim = simulate(panel, pairs, {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}, params)
    assert len(result.trades) > 0 and len(result.positions) > 0
    pd.testing.assert_frame_equal(result.trades, reference_trades(panel, pairs, sim))
    pd.testing.assert_frame_equal(result.positions, reference_positions(panel, pairs, sim))
    if case == "stops_and_liquidations":
        reasons = set(result.trades["reason"]) | set(result.positions["exit_reason"])
        assert {"entry", "exit"} <= reasons and len(reasons) >= 4, reasons


def test_position_table_sorts_rows_in_any_order_by_pair_then_entry():
    """position_table takes its rows in any order: the fused simulator's (each pair's positions in entry order:
    the stable sort on the pair alone) and shuffled (the combined key) give the table of the obvious pandas
    construction, sorted by (pair name, entry_ts)."""
    panel = synthetic_panel(24 * 40, ("C00", "C01", "C02"), with_spot=False, seed=4)
    pairs = get_strategy("perp_perp").pairs(panel, {})
    params = CASES["stops_and_liquidations"]
    sim = simulate(panel, pairs, {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}, params)
    expected = reference_positions(panel, pairs, sim)
    run = run_fused(panel, pairs, params, panel.shape[0], name_rank(pairs.names))
    pi, pf = run.position_ints, run.position_floats
    rows = (pi[0], pi[1], pi[2], pi[3], pi[4], pf[0], pf[1], pf[2], pf[3], pf[4], pi[5], pi[6], pf[5])
    assert len(pi[0]) > 10 and len(set(pi[0])) > 1
    # the fused order is each pair's positions in entry order: the sort on the pair alone suffices (its fast path)
    by_pair = np.argsort(pi[0], kind="stable")
    r, t = pi[0][by_pair], pi[1][by_pair]
    assert np.all((r[1:] != r[:-1]) | (t[1:] > t[:-1]))
    for order in (np.arange(len(pi[0])), np.random.default_rng(0).permutation(len(pi[0]))):
        table = position_table(panel, pairs, *(np.asarray(c)[order] for c in rows))
        pd.testing.assert_frame_equal(table, expected)
