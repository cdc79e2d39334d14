"""Metrics against plain pandas computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest.metrics import performance


def test_metrics_match_pandas() -> None:
    rng = np.random.default_rng(3)
    eq = 1000 * np.cumprod(1 + rng.normal(2e-5, 1e-3, 24 * 400))
    in_market = rng.random(len(eq)) < 0.7
    m = performance(eq[None], 1.0, in_market[None], np.array([5e5]), np.array([10]), np.array([700]))
    s = pd.Series(eq)
    r = s.pct_change().dropna()
    years = (len(eq) - 1) / 8760
    assert m["total_return"][0] == pytest.approx(eq[-1] / eq[0] - 1)
    assert m["annual_return"][0] == pytest.approx((eq[-1] / eq[0]) ** (1 / years) - 1)
    assert m["volatility"][0] == pytest.approx(r.std() * np.sqrt(8760))
    assert m["sharpe"][0] == pytest.approx(r.mean() / r.std() * np.sqrt(8760))
    assert m["sortino"][0] == pytest.approx(r.mean() / np.sqrt((r.clip(upper=0) ** 2).mean()) * np.sqrt(8760))
    mdd = (1 - s / s.cummax()).max()
    assert m["max_drawdown"][0] == pytest.approx(mdd)
    assert m["calmar"][0] == pytest.approx(m["annual_return"][0] / mdd)
    assert m["time_in_market"][0] == pytest.approx(in_market.mean())
    assert m["turnover"][0] == pytest.approx(5e5 / s.mean() / years)
    assert m["avg_holding_h"][0] == pytest.approx(70.0)


def test_flat_equity_has_nan_ratios_not_errors() -> None:
    m = performance(np.full((2, 10), 100.0), 1.0, np.zeros((2, 10), bool), np.zeros(2), np.zeros(2), np.zeros(2))
    assert np.isnan(m["sharpe"]).all() and (m["max_drawdown"] == 0).all() and np.isnan(m["avg_holding_h"]).all()
