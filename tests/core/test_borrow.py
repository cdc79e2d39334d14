"""Borrow-rate structures -> rows, and the rate in force at a time (point in time)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.borrow import borrow_rows, rate_path, rates_as_of

H = 3_600_000


def _entry(currency: str, rate: float, period: int, ts: int) -> dict:
    return {"currency": currency, "rate": rate, "period": period, "timestamp": ts}


def test_a_daily_and_an_hourly_rate_become_the_same_units():
    # binance quotes 0.06 % a day (ccxt period 86400000), okx 0.0025 % an hour: both 21.9 % APR
    daily = borrow_rows("binance", [_entry("BTC", 0.0006, 24 * H, 0)])
    rows = pd.concat([daily, borrow_rows("okx", [_entry("BTC", 0.000025, H, 0)])])
    assert rows["period_h"].tolist() == [24.0, 1.0]
    np.testing.assert_allclose(rows["rate_per_h"], [0.000025, 0.000025], rtol=1e-12)
    np.testing.assert_allclose(rows["borrow_apr"], [0.219, 0.219], rtol=1e-12)
    assert rows["ts"].iloc[0] == pd.Timestamp("1970-01-01")


@pytest.mark.parametrize(
    "entry,message",
    [
        (_entry("BTC", -0.001, H, 0), r"rate -0\.001"),
        (_entry("BTC", float("nan"), H, 0), r"rate nan"),
        (_entry("BTC", 0.001, 0, 0), r"period 0"),
        (_entry("", 0.001, H, 0), r"currency ''"),
        ({"currency": "BTC", "rate": 0.001, "period": H, "timestamp": None}, r"timestamp None"),
    ],
)
def test_an_unusable_entry_names_the_field_and_value(entry, message):
    with pytest.raises(ValueError, match=rf"borrow rate from okx: {message}"):
        borrow_rows("okx", [entry])


def test_the_rate_in_force_is_the_last_published_at_or_before_the_time():
    rows = borrow_rows("bybit", [_entry("ETH", r / 8760, H, t * H) for r, t in ((0.05, 0), (0.10, 5), (0.20, 9))])
    at = rates_as_of(rows, pd.Timestamp(5 * H, unit="ms"))  # exactly when 10 % was published: it is in force
    assert at[["exchange", "asset"]].values.tolist() == [["bybit", "ETH"]]
    assert at["borrow_apr"].iloc[0] == pytest.approx(0.10)
    assert rates_as_of(rows, pd.Timestamp(5 * H - 1, unit="ms"))["borrow_apr"].iloc[0] == pytest.approx(0.05)
    assert rates_as_of(rows, pd.Timestamp(-1, unit="ms")).empty
    path = rate_path(rows, "bybit", "ETH", np.array([-1, 0, 4 * H, 5 * H, 8 * H + 59, 100 * H]))
    np.testing.assert_allclose(path, [np.nan, 0.05, 0.05, 0.10, 0.10, 0.20], rtol=1e-12)
    assert np.isnan(rate_path(rows, "bybit", "BTC", np.array([0]))).all()  # another currency: unknown
