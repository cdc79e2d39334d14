"""Risk: stress by shock with hand-computed margins, exposures, limits, historical VaR/ES."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest.accounting import liquidation_price
from fundarb_dagster.core.risk import (
    RiskLimits,
    book_pnl_scenarios,
    book_scenarios,
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


def _scenario_inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A cash-and-carry on bybit BTC and a perp-perp on ETH, 60 hours of closes (one missing), hourly and 8h
    settlements."""
    rng = np.random.default_rng(4)
    book = pd.DataFrame(
        [
            {**leg("c", "a", "bybit", "perp", -2.0, 5000), "mark_price": 101_000.0},
            {**leg("c", "b", "bybit", "spot", 2.0, 0), "mark_price": 100_950.0},
            {**leg("pp", "a", "binance", "perp", -30.0, 9000, "ETH"), "mark_price": 3_010.0},
            {**leg("pp", "b", "hyperliquid", "perp", 30.0, 9000, "ETH"), "mark_price": 3_008.0},
        ]
    )
    book.loc[3, "symbol"] = "ETH/USDC:USDC"
    hours = pd.date_range("2026-03-01", periods=60, freq="h")
    closes = []
    for row in book.itertuples(index=False):
        path = row.mark_price * np.exp(np.cumsum(rng.normal(0, 0.004, len(hours))))
        closes.append(pd.DataFrame({"exchange": row.exchange, "symbol": row.symbol, "ts": hours, "close": path}))
    closes = pd.concat(closes, ignore_index=True)
    closes = closes.drop(closes[(closes.exchange == "binance") & (closes.ts == hours[30])].index)  # a gap
    settlements = pd.concat(
        [
            pd.DataFrame({"exchange": "hyperliquid", "symbol": "ETH/USDC:USDC",
                          "funding_ts": hours + pd.Timedelta("1h"), "funding_rate": rng.normal(1e-5, 2e-5, 60)}),
            pd.DataFrame({"exchange": "binance", "symbol": "ETH/USDT:USDT",
                          "funding_ts": hours[::8] + pd.Timedelta("8h"), "funding_rate": rng.normal(1e-4, 1e-4, 8)}),
            pd.DataFrame({"exchange": "bybit", "symbol": "BTC/USDT:USDT",
                          "funding_ts": hours[::8] + pd.Timedelta("8h"), "funding_rate": rng.normal(1e-4, 1e-4, 8)}),
            # spot has no funding even if a row says so
            pd.DataFrame({"exchange": "bybit", "symbol": "BTC/USDT", "funding_ts": hours[:1], "funding_rate": [1.0]}),
        ],
        ignore_index=True,
    )  # fmt: skip
    return book, closes, settlements


def test_book_scenarios_apply_each_past_hours_moves_to_todays_legs() -> None:
    book, closes, settlements = _scenario_inputs()
    got = book_scenarios(book, closes, settlements).set_index("ts")
    # independent: a loop over hours and legs with plain dict lookups
    close = {(r.exchange, r.symbol, r.ts): r.close for r in closes.itertuples(index=False)}
    expected = {}
    for ts in sorted(closes["ts"].unique())[1:]:
        ts = pd.Timestamp(ts)
        prev = ts - pd.Timedelta("1h")
        total, complete = 0.0, True
        for row in book.itertuples(index=False):
            now, before = close.get((row.exchange, row.symbol, ts)), close.get((row.exchange, row.symbol, prev))
            if now is None or before is None:
                complete = False
                break
            exposure = row.units * row.mark_price
            total += exposure * (now / before - 1)
            if row.kind == "perp":
                for s in settlements.itertuples(index=False):
                    if (s.exchange, s.symbol) == (row.exchange, row.symbol) and ts < s.funding_ts <= ts + pd.Timedelta(
                        "1h"
                    ):
                        total -= exposure * s.funding_rate
        if complete:
            expected[ts] = total
    assert len(got) == len(expected) == 59 - 2  # the gap removes the hour into it and the hour out of it
    np.testing.assert_allclose(got.loc[list(expected), "pnl_usd"], list(expected.values()), rtol=1e-10)
    np.testing.assert_allclose(got["price_pnl_usd"] + got["funding_pnl_usd"], got["pnl_usd"], rtol=1e-12)
    assert (got["funding_pnl_usd"] != 0).any()


def test_var_of_the_current_book_sees_risk_a_flat_history_hides() -> None:
    """A backtest flat until its last bar has no equity moves, so VaR on its equity differences is 0; today's
    book (an unhedged perp leg here) has the risk of the price moves it would have lived through."""
    book, closes, settlements = _scenario_inputs()
    unhedged = book.iloc[[0]]  # short 2 BTC perp, nothing against it
    flat_equity = np.full(60, 1e6)
    assert historical_var_es(np.diff(flat_equity), 0.95) == (0.0, 0.0)
    scen = book_scenarios(unhedged, closes, settlements)["pnl_usd"].to_numpy()
    var, es = historical_var_es(scen, 0.95)
    worst = np.sort(scen)  # independent: the empirical 5 % lower quantile of the sample, interpolated
    k = 0.05 * (len(worst) - 1)
    q = worst[int(np.floor(k))] + (worst[int(np.ceil(k))] - worst[int(np.floor(k))]) * (k - np.floor(k))
    assert var == pytest.approx(-q) and var > 0.002 * 2 * 101_000  # a few tenths of a percent of 2 BTC
    assert es >= var


def test_an_empty_book_has_no_scenarios() -> None:
    book, closes, settlements = _scenario_inputs()
    assert book_scenarios(book.iloc[0:0], closes, settlements).empty
