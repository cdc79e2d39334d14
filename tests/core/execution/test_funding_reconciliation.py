"""Expected funding (rate x position x reference price) against what the venue booked, each difference named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.execution.funding_reconciliation import reconcile, units_at

H = 3_600_000
T0 = 1_780_000_000_000 // (8 * H) * (8 * H)


def settlements(
    n: int = 4, interval_h: float = 8.0, rate: float = 1e-4, price: float = 50_000.0, other: float = 50_100.0
) -> pd.DataFrame:
    t = T0 + np.arange(1, n + 1) * int(interval_h * H)
    return pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": "BTC/USDT:USDT",
            "funding_ts": pd.to_datetime(t, unit="ms"),
            "funding_ts_ms": t + 7,
            "funding_rate": rate,
            "interval_h": interval_h,
            "ref_price": price,
            "other_price": other,
        }
    )


FILLS = pd.DataFrame(
    {
        "exchange": ["binance"] * 2,
        "symbol": ["BTC/USDT:USDT"] * 2,
        "ts_ms": [T0 + 5, T0 + 9 * H],
        "side": [-1, 1],
        "amount": [2.0, 0.5],
    }
)


def test_units_at_a_settlement_count_fills_strictly_before_it() -> None:
    got = units_at(FILLS, "binance", "BTC/USDT:USDT", np.array([T0 + 5, T0 + 6, T0 + 9 * H + 1]))
    np.testing.assert_allclose(got, [0.0, -2.0, -1.5])


def test_payments_equal_to_the_model_are_ok_and_each_kind_of_difference_is_named() -> None:
    s = settlements()
    expected = [2.0 * 1e-4 * 50_000, 1.5 * 1e-4 * 50_000, 1.5 * 1e-4 * 50_000, 1.5 * 1e-4 * 50_000]  # short receives
    times = s["funding_ts_ms"].to_numpy() + 3  # the venue's stamps jitter
    booked = [expected[0], -expected[1], 1.5 * 1e-4 * 50_100]  # ok, wrong sign, paid on the other price; 4th missing
    payments = pd.DataFrame({"exchange": "binance", "symbol": "BTC/USDT:USDT", "ts_ms": times[:3], "amount": booked})
    out = reconcile(s, payments, FILLS)
    assert list(out["status"]) == ["ok", "mismatch", "mismatch", "mismatch"]
    assert list(out["explanation"]) == [
        "",
        "wrong sign",
        "wrong reference price (paid on the other price)",
        "missing payment",
    ]
    np.testing.assert_allclose(out["expected_usd"], expected)
    assert out["implied_price"].iloc[2] == pytest.approx(50_100.0)
    assert out["difference_usd"].iloc[3] == pytest.approx(-expected[3])


def test_a_cent_is_the_tolerance_and_payments_off_the_schedule_are_an_interval_change() -> None:
    s = settlements(n=2)
    t = s["funding_ts_ms"].to_numpy()
    exact = 2.0 * 1e-4 * 50_000
    payments = pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": "BTC/USDT:USDT",
            "ts_ms": [t[0], t[0] + 4 * H, t[1]],
            "amount": [exact + 0.009, 0.5, 7.5],
        }
    )
    out = reconcile(s, payments, FILLS)
    assert out.iloc[0]["status"] == "ok"  # 0.9 cent off
    off = out[out["funding_ts_ms"] == t[0] + 4 * H].iloc[0]
    assert off["status"] == "mismatch" and off["explanation"] == "interval change"


def test_a_payment_with_no_position_is_unexpected_and_no_position_no_row() -> None:
    s = settlements(n=1)
    flat = FILLS.iloc[0:0]
    assert reconcile(s, s.iloc[0:0].rename(columns={"funding_ts_ms": "ts_ms"}).assign(amount=[]), flat).empty
    payments = pd.DataFrame(
        {"exchange": "binance", "symbol": "BTC/USDT:USDT", "ts_ms": s["funding_ts_ms"], "amount": 3.0}
    )
    out = reconcile(s, payments, flat)
    assert list(out["explanation"]) == ["unexpected payment"]


def test_an_exit_whose_fills_sum_to_float_dust_holds_nothing() -> None:
    fills = pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": "BTC/USDT:USDT",
            "ts_ms": [T0 + 5, T0 + 6, T0 + 7],
            "side": [1, -1, -1],
            "amount": [0.3, 0.1, 0.2],  # 0.3 - 0.1 - 0.2 = 5.6e-17 in floats
        }
    )
    assert units_at(fills, "binance", "BTC/USDT:USDT", np.array([T0 + 8]))[0] == 0.0
    no_payments = pd.DataFrame({"exchange": [], "symbol": [], "ts_ms": [], "amount": []})
    assert reconcile(settlements(n=1), no_payments, fills).empty  # no row: nothing held, nothing booked


def test_a_payment_after_the_last_loaded_settlement_on_a_held_position_is_pending_not_a_mismatch() -> None:
    s = settlements(n=1)
    later = int(s["funding_ts_ms"].iloc[0]) + 8 * H  # the next settlement: its rate is not loaded yet
    paid = 2.0 * 1e-4 * 50_000
    payments = pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": "BTC/USDT:USDT",
            "ts_ms": [int(s["funding_ts_ms"].iloc[0]), later],
            "amount": [paid, 0.75],
        }
    )
    out = reconcile(s, payments, FILLS)
    assert list(out["status"]) == ["ok", "pending"]
    assert out["explanation"].iloc[1] == "settled rate not loaded yet" and out["units"].iloc[1] == -1.5
    flat = FILLS.assign(amount=[2.0, 2.0])  # the position was closed before: that payment is unexpected
    assert reconcile(s, payments, flat)["explanation"].iloc[1] == "unexpected payment"
