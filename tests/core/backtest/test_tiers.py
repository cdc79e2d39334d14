"""Backtest liquidation under leverage tiers: the tier the notional at the liquidation price falls in, at the
tier edges, by hand; a sweep point liquidates at the same bar as the full backtest of its parameters."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.engine import make_grid, simulate
from fundarb_dagster.core.backtest.panel import with_tiers
from fundarb_dagster.core.backtest.sweeps import sweep

from .test_engine import tiny_panel

# capital 750, leverage 2: 500 per leg (750 / (1/2 + 1)), 5 units short the perp at 100, wallet 250 (50 a unit);
# binance perp taker 5 bp. Bar 2's high is 148.43.
PARAMS = BacktestParams(capital=750.0, leverage=2.0, enter_apr=0.1, exit_apr=0.02, drawdown_stop=0.0)
FEE = 0.0005


def _tiers(edge: float) -> pd.DataFrame:
    """Two tiers meeting at `edge`: 1 % up to it, 5 % above (maintenance amount edge x 4 %: continuous)."""
    return pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": "X/USDT:USDT",
            "min_notional": [0.0, edge],
            "max_notional": [edge, 1e9],
            "mmr": [0.01, 0.05],
            "maintenance_amount": [0.0, edge * 0.04],
        }
    )


def _run(edge: float):
    panel = tiny_panel([100] * 4, [100] * 4, [0.5] * 4, [0.0] * 4, high=[100, 100, 148.43, 100])
    panel, sources = with_tiers(panel, _tiers(edge))
    assert sources == {"binance X/USDT:USDT": "tiers (2)"}
    return run_backtest(panel, get_strategy("cash_carry").pairs(panel, {}), PARAMS)


def test_a_liquidation_notional_inside_the_first_tier_uses_its_rate():
    # tier 1: P = (100 + 50) / (1 + 0.01 + fee) = 148.4415; 5 x P = 742.2 <= 750: tier 1 holds it, and the bar's
    # high 148.43 stays below: no liquidation
    p1 = 150 / (1 + 0.01 + FEE)
    assert 5 * p1 <= 750 and p1 > 148.43
    r = _run(750.0)
    assert r.attribution.get("liquidation", 0.0) == 0.0
    assert "liquidation" not in set(r.trades["reason"])


def test_a_liquidation_notional_past_the_edge_uses_the_next_tier():
    # edge 740: tier 1's solution (742.2) lies past it, so tier 2: P = (100 + 50 + 29.6 / 5) / (1 + 0.05 + fee)
    # = 148.4246, notional 742.1 > 740: inside tier 2. The high 148.43 breaches it at bar 2.
    p2 = (150 + 29.6 / 5) / (1 + 0.05 + FEE)
    assert 5 * p2 > 740 and p2 < 148.43
    r = _run(740.0)
    liq = r.trades[(r.trades["reason"] == "liquidation") & (r.trades["symbol"] == "X/USDT:USDT")]
    assert len(liq) == 1 and liq["price"].iloc[0] == pytest.approx(p2, rel=1e-12)  # (the spot closes at mid)
    # the maintenance margin forfeited there: 5 x P x 5 % - 29.6
    assert r.attribution["liquidation"] == pytest.approx(5 * p2 * 0.05 - 29.6, rel=1e-9)


@pytest.mark.parametrize("edge, liquidated", [(750.0, False), (740.0, True)])
def test_a_sweep_point_liquidates_at_the_tier_the_full_backtest_does(edge, liquidated):
    # the same tier edges by hand (above): at leverage 2 the edge-740 schedule liquidates at bar 2, the edge-750
    # one never; at leverage 1.5 (450 per leg, 4.5 units, wallet 300) tier 2's price is
    # (100 + 300 / 4.5 + edge x 4 % / 4.5) / (1 + 0.05 + fee) > 164: never. The sweep sees the tier too.
    panel = tiny_panel([100] * 4, [100] * 4, [0.5] * 4, [0.0] * 4, high=[100, 100, 148.43, 100])
    panel, _ = with_tiers(panel, _tiers(edge))
    pairs = get_strategy("cash_carry").pairs(panel, {})
    swept = sweep(panel, pairs, PARAMS, {"leverage": [1.5, 2.0]}).set_index("leverage")
    grid = make_grid(PARAMS, {"leverage": [1.5, 2.0]})
    points = simulate(panel, pairs, grid, PARAMS, detail=False)
    for g, leverage in enumerate(grid["leverage"]):
        full = run_backtest(panel, pairs, replace(PARAMS, leverage=float(leverage)))
        liq_bars = list(full.equity.index[full.equity["liquidation_pnl"] != 0])
        expected = [2] if liquidated and leverage == 2.0 else []
        assert liq_bars == expected
        # the sweep point: the same liquidations, the same equity at every bar (so the same bar)
        assert swept.loc[leverage, "liquidations"] == len(expected) == points["liquidations"][g]
        np.testing.assert_allclose(points["equity"][g], full.equity["equity"].to_numpy(), rtol=0, atol=1e-9)
        assert swept.loc[leverage, "final_equity"] == pytest.approx(full.equity["equity"].iloc[-1], abs=1e-9)
    if liquidated:  # the maintenance margin forfeited at tier 2's price, by hand
        p2 = (150 + 29.6 / 5) / (1 + 0.05 + FEE)
        assert points["attribution"]["liquidation"][1] == pytest.approx(5 * p2 * 0.05 - 29.6, rel=1e-9)
