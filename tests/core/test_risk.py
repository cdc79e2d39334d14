"""Risk: stress by shock with hand-computed margins, exposures, limits, historical VaR/ES."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest.accounting import liquidation_price
from fundarb_dagster.core.risk import (
    RiskLimits,
    book_pnl_scenarios,
    evaluate_limits,
    exposures,
    historical_var_es,
    liquidation_distance,
    stress_book,
)

MMR, FEE = 0.005, 0.0005


def leg(pair: str, leg: str, exchange: str, kind: str, units: float, wallet: float, underlying: str = "BTC") -> dict:
    return {
        "pair": pair,
        "leg": leg,
        "exchange": exchange,
        "symbol": f"{underlying}/USDT" + (":USDT" if kind == "perp" else ""),
        "underlying": underlying,
        "kind": kind,
        "units": units,
        "entry_price": 100.0,
        "mark_price": 100.0,
        "wallet_usd": wallet,
        "notional_usd": abs(units) * 100,
        "mmr": MMR if kind == "perp" else 0.0,
        "taker_fee": FEE,
        "leverage": 10.0,
    }


def carry_book() -> pd.DataFrame:
    return pd.DataFrame([leg("c", "a", "bybit", "perp", -10, 100), leg("c", "b", "bybit", "spot", 10, 1000)])


def perp_perp_book() -> pd.DataFrame:
    return pd.DataFrame([leg("pp", "a", "binance", "perp", -10, 100), leg("pp", "b", "hyperliquid", "perp", 10, 100)])


def test_stress_cash_carry_up_shock_needs_margin_from_spot_gain() -> None:
    out = stress_book(carry_book(), [0.1, -0.1])
    up = out.iloc[0]
    # equity at 110: 100 - 10 * 10 = 0; maintenance (0.5 % + 0.05 %) * 10 * 110 = 6.05
    assert up["first_liquidated"] == "bybit:BTC/USDT:USDT"
    assert up["margin_needed_usd"] == pytest.approx(6.05)
    assert up["donor_free_margin_usd"] == pytest.approx(100.0)  # the spot leg's gain
    assert up["transfer_prevents"]
    assert up["liq_price_first"] == pytest.approx(110 / 1.0055)
    assert up["pnl_usd"] == pytest.approx(0.0)  # delta-neutral
    down = out.iloc[1]
    assert pd.isna(down["first_liquidated"]) and down["margin_needed_usd"] == 0.0


def test_stress_perp_perp_each_direction_hits_the_other_leg() -> None:
    out = stress_book(perp_perp_book(), [0.2, -0.2])
    up, down = out.iloc[0], out.iloc[1]
    assert up["first_liquidated"] == "binance:BTC/USDT:USDT"  # the short
    assert up["margin_needed_usd"] == pytest.approx(0.0055 * 10 * 120 - (100 - 200))
    assert up["donor_free_margin_usd"] == pytest.approx((100 + 200) - 0.0055 * 10 * 120)
    assert down["first_liquidated"] == "hyperliquid:BTC/USDT:USDT"  # the long
    assert down["margin_needed_usd"] == pytest.approx(0.0055 * 10 * 80 - (100 - 200))
    assert down["transfer_prevents"]


def test_transfer_cannot_cover_a_huge_shock_with_thin_donor() -> None:
    book = perp_perp_book()
    book.loc[1, "wallet_usd"] = 1.0
    book.loc[0, "wallet_usd"] = 1.0
    out = stress_book(book, [0.01]).iloc[0]
    assert out["first_liquidated"] == "binance:BTC/USDT:USDT"
    assert out["donor_free_margin_usd"] == pytest.approx(1 + 10 - 0.0055 * 10 * 101)


def test_liquidation_distance_matches_accounting_formula() -> None:
    d = liquidation_distance(perp_perp_book())
    assert d[0] == pytest.approx(liquidation_price(100, 100, -10, MMR, FEE) / 100 - 1)
    assert d[1] == pytest.approx(1 - liquidation_price(100, 100, 10, MMR, FEE) / 100)


def test_historical_var_es_against_sorted_sample() -> None:
    x = np.random.default_rng(5).normal(0, 1, 10_000)
    var, es = historical_var_es(x, 0.99)
    assert var == pytest.approx(-np.quantile(x, 0.01))
    assert es == pytest.approx(-np.sort(x)[: int((x <= -var).sum())].mean())
    assert es >= var
    assert book_pnl_scenarios([100.0, -50.0], [[0.01, 0.02], [-0.01, 0.0]]).tolist() == pytest.approx([0.0, -1.0])


def test_limits_raise_breaches_with_values_and_thresholds() -> None:
    book = pd.concat([perp_perp_book(), carry_book()], ignore_index=True)
    ex = exposures(book, equity=500.0)
    assert ex["gross_usd"] == pytest.approx(4000.0)
    assert ex["venue_share"]["bybit"] == pytest.approx(0.5)
    limits = RiskLimits(
        max_gross_usd=3000,
        max_venue_share=0.4,
        max_leverage=5,
        max_drawdown=0.1,
        min_liq_distance=0.2,
        max_var_usd=1.0,
        max_margin_utilization=0.9,
    )
    pnl = np.random.default_rng(1).normal(0, 10, 500)
    figures, breaches = evaluate_limits(book, 500.0, 0.25, pnl, limits, subject="run1")
    rules = {b.rule for b in breaches}
    assert {
        "risk_gross_exposure",
        "risk_venue_concentration",
        "risk_leverage",
        "risk_drawdown",
        "risk_liq_distance",
        "risk_var",
    } <= rules
    lev = next(b for b in breaches if b.rule == "risk_leverage")
    assert lev.value == pytest.approx(8.0) and lev.threshold == 5 and lev.severity == "critical"
    assert "risk_margin_utilization" not in rules  # 0.055 / 0.1 well under 0.9
    assert figures["var_usd"] > 1
    _, none = evaluate_limits(
        book, 1e6, 0.0, np.zeros(10), RiskLimits(max_venue_share=None, max_asset_share=None, min_liq_distance=0.05)
    )
    assert none == []


def test_limits_validation_names_field() -> None:
    with pytest.raises(ValueError, match="max_leverage"):
        RiskLimits(max_leverage=-1)
    with pytest.raises(ValueError, match="var_level"):
        RiskLimits(var_level=0.3)


def test_stress_of_a_flat_book_is_an_empty_table_with_every_column() -> None:
    # A backtest that ends flat leaves no open legs; the risk asset still writes its stress table.
    flat = carry_book().iloc[0:0]
    stress = stress_book(flat)
    assert stress.empty
    assert list(stress.columns) == list(stress_book(carry_book()).columns)
