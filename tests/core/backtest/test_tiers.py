"""Backtest liquidation under leverage tiers: the tier the notional at the liquidation price falls in, at the
tier edges, by hand; sweeps refuse tiers (their per-unit event path cannot see a notional)."""

from __future__ import annotations

import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.engine import make_grid, simulate
from fundarb_dagster.core.backtest.panel import with_tiers

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


def test_sweeps_refuse_tiers():
    panel, _ = with_tiers(tiny_panel([100] * 4, [100] * 4, [0.5] * 4, [0.0] * 4), _tiers(740.0))
    pairs = get_strategy("cash_carry").pairs(panel, {})
    with pytest.raises(ValueError, match="tiers: leverage tiers run in full backtests only"):
        simulate(panel, pairs, make_grid(PARAMS, {"leverage": [1.0, 2.0]}), PARAMS, detail=False)
