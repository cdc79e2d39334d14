"""Each backtest trade pays the fee in force at its bar (dated config fees by tier), at the validity edges, and
both engines agree on fees that change with time."""

from __future__ import annotations

import numpy as np
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.engine import make_grid, simulate
from fundarb_dagster.core.backtest.panel import Panel, with_dated_fees
from fundarb_dagster.core.fees import FeeEntry, FeeTable
from fundarb_dagster.core.units import HOUR_MS

from .test_engine import tiny_panel

EXIT = 2 * HOUR_MS  # the round trip enters at bar 0 and exits at bar 2 (ts 02:00)
TABLE = FeeTable(
    (
        FeeEntry("binance", "vip0", "perp", -0.5, 2.0, EXIT),  # in force from the exit bar exactly
        FeeEntry("binance", "vip0", "spot", 3.0, 1.0, EXIT + 1),  # 1 ms after it: not yet
    )
)


@pytest.mark.parametrize(
    "execution,by_hand",
    [
        # 5 units x 100 per leg. Entry: binance defaults (perp taker 5, spot taker 10 bps): 0.25 + 0.5. Exit: the
        # perp's new 2 bps (0.1), the spot still 10 bps (0.5)
        ("taker", [0.25, 0.5, 0.1, 0.5]),
        # maker: perp default 2 bps, spot 10 bps at entry; the perp's -0.5 bps rebate at exit
        ("maker", [0.1, 0.5, -0.025, 0.5]),
    ],
)
def test_a_trade_pays_the_fee_in_force_at_its_bar(execution: str, by_hand: list[float]) -> None:
    panel, sources = with_dated_fees(tiny_panel([100] * 4, [100] * 4, [0.5, 0.5, 0.0, 0.0], [0.0] * 4), TABLE)
    # the spot entry is in force from bar 3 on (after the round trip), the perp one from bar 2
    assert sources == {"binance X/USDT:USDT": "config+venue_default", "binance X/USDT": "config+venue_default"}
    params = BacktestParams(capital=1000.0, leverage=1.0, enter_apr=0.1, exit_apr=0.02, execution=execution)
    r = run_backtest(panel, get_strategy("cash_carry").pairs(panel, {}), params)
    trades = r.trades.sort_values(["ts", "symbol"], ascending=[True, False])
    assert list(trades["reason"]) == ["entry", "entry", "exit", "exit"]
    np.testing.assert_allclose(trades["fee_usd"], by_hand, rtol=0, atol=1e-12)
    assert r.attribution["fees"] == pytest.approx(sum(by_hand), abs=1e-12)


def test_grid_sharing_path_equals_full_engine_with_dated_fees(sim_panel: Panel) -> None:
    mid = int(sim_panel.ts_ms[len(sim_panel.ts_ms) // 2])
    entries = tuple(
        FeeEntry(m.exchange, "vip0", m.kind, 1.0 + k % 3, 3.0 + k % 4, mid + k * HOUR_MS)
        for k, m in enumerate(sim_panel.markets)
    )
    panel, _ = with_dated_fees(sim_panel, FeeTable(entries))
    assert panel.taker_fee_t is not None and (panel.taker_fee_t[0] != panel.taker_fee_t[-1]).all()
    pairs = get_strategy("cash_carry").pairs(panel, {"borrow_apr": 0.08})
    base = BacktestParams(stop_distance=0.02)
    axes = {"enter_apr": [0.05, 0.15], "exit_apr": [0.0, 0.03], "leverage": [1.0, 3.0, 12.0], "rebalance_h": [0, 5]}
    grid = make_grid(base, axes)
    full = simulate(panel, pairs, grid, base, detail=True)
    fast = simulate(panel, pairs, grid, base, detail=False)
    for key, value in full["attribution"].items():
        np.testing.assert_allclose(fast["attribution"][key], value, rtol=0, atol=1e-9 * base.capital, err_msg=key)
    undated = simulate(sim_panel, pairs, grid, base, detail=False)
    assert not np.allclose(undated["attribution"]["fees"], full["attribution"]["fees"])  # the dates mattered
