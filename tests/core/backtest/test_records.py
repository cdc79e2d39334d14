"""core.backtest.records: the trade and position tables (built through Arrow, from the fused simulator's rows)
equal the obvious pandas construction (reference_records.py) on the vectorized engine's per-bar arrays, row for
row and dtype for dtype, on runs with every kind of exit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest, simulate
from fundarb_dagster.core.backtest.engine import GRID_FIELDS
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
