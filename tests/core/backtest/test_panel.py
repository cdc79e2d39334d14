"""Panel builders: settlement booking, point-in-time expected funding, interval history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest.panel import attach_intervals, build_panel, interval_at, make_market
from fundarb_dagster.core.units import HOUR_MS

T0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS


def prices(hours: int = 12) -> pd.DataFrame:
    ts = T0 + HOUR_MS * np.arange(hours)
    perp = pd.DataFrame({"ts_ms": ts, "exchange": "bybit", "symbol": "A/USDT:USDT", "mid": 100.0 + np.arange(hours)})
    spot = pd.DataFrame({"ts_ms": ts, "exchange": "bybit", "symbol": "A/USDT", "mid": 100.0})
    return pd.concat([perp, spot], ignore_index=True)


MARKETS = [make_market("bybit", "A/USDT:USDT", "A", "perp"), make_market("bybit", "A/USDT", "A", "spot")]


def test_settlement_is_booked_in_the_bar_that_contains_it() -> None:
    s = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "A/USDT:USDT",
            "funding_ts_ms": [T0 + 2 * HOUR_MS, T0 + 4 * HOUR_MS + 4, T0 - HOUR_MS],  # on a bar, jittered, before
            "funding_rate": [0.001, 0.002, 0.5],
            "interval_h": 8.0,
            "ref_price": [np.nan, 50.0, 1.0],
        }
    )
    panel = build_panel(prices(), MARKETS, s)
    cash = panel.funding_cash[:, 0]
    assert cash[2] == pytest.approx(0.001 * 102.0)  # at the bar's own time: the bar's reference price
    assert cash[5] == pytest.approx(0.002 * 50.0)  # 4 ms after 04:00 belongs to the bar known at 05:00
    assert np.count_nonzero(cash) == 2  # the one before the first bar is dropped
    assert panel.settlements == 2
    assert (panel.funding_cash[:, 1] == 0).all()


def test_expected_apr_uses_only_published_settlements() -> None:
    s = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "A/USDT:USDT",
            "funding_ts_ms": [T0 + 3 * HOUR_MS, T0 + 7 * HOUR_MS],
            "funding_rate": [0.0001, 0.0003],
            "interval_h": [8.0, 4.0],
        }
    )
    panel = build_panel(prices(), MARKETS, s)
    apr = panel.expected_apr[:, 0]
    assert np.isnan(apr[:3]).all()
    np.testing.assert_allclose(apr[3:7], 0.0001 * 8760 / 8)
    np.testing.assert_allclose(apr[7:], 0.0003 * 8760 / 4)
    assert np.isnan(panel.expected_apr[:, 1]).all()  # spot has no funding


def test_predictions_as_captured_replace_settled_rates() -> None:
    s = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "A/USDT:USDT",
            "funding_ts_ms": [T0 + 8 * HOUR_MS],
            "funding_rate": [0.01],
            "interval_h": 8.0,
        }
    )
    p = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "A/USDT:USDT",
            "ts_ms": T0 + HOUR_MS * np.array([1, 5]) + 1,
            "predicted_rate": [0.0002, 0.0004],
            "interval_h": 8.0,
        }
    )
    panel = build_panel(prices(), MARKETS, s, p)
    apr = panel.expected_apr[:, 0]
    assert np.isnan(apr[:2]).all()  # captured 1 ms after bar 1: first usable at bar 2
    np.testing.assert_allclose(apr[2:6], 0.0002 * 1095)
    np.testing.assert_allclose(apr[6:], 0.0004 * 1095)  # the settled 0.01 is never used as a prediction


def test_settled_rates_stand_in_for_predictions_until_the_first_captured_one() -> None:
    s = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "A/USDT:USDT",
            "funding_ts_ms": [T0 + HOUR_MS, T0 + 6 * HOUR_MS],
            "funding_rate": [0.0001, 0.01],
            "interval_h": 8.0,
        }
    )
    p = pd.DataFrame(
        {"exchange": "bybit", "symbol": "A/USDT:USDT", "ts_ms": [T0 + 4 * HOUR_MS], "predicted_rate": [0.0002]}
    ).assign(interval_h=8.0)
    apr = build_panel(prices(), MARKETS, s, p).expected_apr[:, 0]
    assert np.isnan(apr[:1]).all()
    np.testing.assert_allclose(apr[1:4], 0.0001 * 1095)  # history before the capture: the settled rate
    np.testing.assert_allclose(apr[4:], 0.0002 * 1095)  # from the first prediction on, predictions only


def test_perturbing_later_settlements_leaves_earlier_expectations() -> None:
    rng = np.random.default_rng(1)
    ts = T0 + HOUR_MS * np.arange(1, 12)
    s = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "A/USDT:USDT",
            "funding_ts_ms": ts,
            "funding_rate": rng.normal(0, 1e-4, 11),
            "interval_h": 1.0,
        }
    )
    base = build_panel(prices(), MARKETS, s)
    s2 = s.copy()
    s2.loc[s2["funding_ts_ms"] > T0 + 5 * HOUR_MS, "funding_rate"] = 1.0
    other = build_panel(prices(), MARKETS, s2)
    np.testing.assert_array_equal(other.expected_apr[:6], base.expected_apr[:6])
    np.testing.assert_array_equal(other.funding_cash[:6], base.funding_cash[:6])


def test_interval_in_force_from_history() -> None:
    spans_from = np.array([0, 100, 200])
    spans_h = np.array([8.0, 4.0, 1.0])
    np.testing.assert_array_equal(interval_at(spans_from, spans_h, np.array([-5, 0, 99, 100, 250])), [8, 8, 8, 4, 1])
    s = pd.DataFrame(
        {"exchange": ["x", "x", "y"], "symbol": "S", "funding_ts_ms": [50, 150, 150], "interval_h": [9.0, 9.0, 2.0]}
    )
    hist = pd.DataFrame({"exchange": "x", "symbol": "S", "valid_from_ms": spans_from, "interval_h": spans_h})
    out = attach_intervals(s, hist)
    assert list(out["interval_h"]) == [8.0, 4.0, 2.0]


def test_prices_forward_fill_and_missing_column_error() -> None:
    p = prices().drop(index=[3, 4])  # perp bars 3 and 4 missing: stale price, never interpolated
    panel = build_panel(p, MARKETS, pd.DataFrame())
    assert panel.mid[3, 0] == panel.mid[4, 0] == 102.0
    with pytest.raises(ValueError, match="prices: missing column 'mid'"):
        build_panel(p.drop(columns="mid"), MARKETS, pd.DataFrame())
    with pytest.raises(ValueError, match="kind"):
        make_market("bybit", "A", "A", "future")
