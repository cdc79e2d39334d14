"""AR(1) persistence on synthetic series with a known phi, and the carry/cost arithmetic of the ranking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import opportunities as o


def _ar1(phi: float, mu: float, n: int, sigma: float = 0.01, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = mu
    for t in range(1, n):
        x[t] = mu + phi * (x[t - 1] - mu) + rng.normal(0, sigma)
    return x


@pytest.mark.parametrize("phi", [0.5, 0.9, 0.97])
def test_ar1_fit_recovers_a_known_phi_and_its_half_life(phi):
    x = _ar1(phi, mu=0.1, n=20_000)
    fit = o.fit_ar1(x)
    assert fit.phi == pytest.approx(phi, abs=0.02)
    assert fit.mu == pytest.approx(0.1, abs=0.01)
    true_half_life = math.log(0.5) / math.log(phi)
    assert fit.half_life == pytest.approx(true_half_life, rel=0.2)
    # independent OLS via numpy's least squares
    a = np.column_stack([np.ones(len(x) - 1), x[:-1]])
    (_, slope), *_ = np.linalg.lstsq(a, x[1:], rcond=None)
    assert fit.phi == pytest.approx(slope, rel=1e-9)


def test_half_life_edges():
    assert o.half_life(1.0) == math.inf
    assert o.half_life(-0.3) == 0.0
    assert math.isnan(o.half_life(float("nan")))


def test_expected_mean_is_the_average_of_iterated_ar1_forecasts():
    mu, phi, x0, horizon = 0.05, 0.8, 0.30, 24
    forecasts, x = [], x0
    for _ in range(horizon):
        x = mu + phi * (x - mu)
        forecasts.append(x)
    assert o.expected_mean(x0, mu, phi, horizon) == pytest.approx(np.mean(forecasts))
    assert o.expected_mean(x0, mu, 1.0, horizon) == x0  # a random walk is expected to stay put


def _hourly(series: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    frames = []
    for (exchange, symbol), values in series.items():
        ts = pd.date_range("2026-01-01", periods=len(values), freq="h")
        frames.append(pd.DataFrame({"exchange": exchange, "symbol": symbol, "ts": ts, "funding_apr": values}))
    return pd.concat(frames, ignore_index=True)


def test_perp_perp_shorts_the_venue_paid_more_and_nets_round_trip_costs():
    n = 200
    hi = _ar1(0.9, 0.30, n, seed=1)
    lo = _ar1(0.9, 0.05, n, seed=2)
    hourly = _hourly({("bybit", "BTC/USDT:USDT"): hi, ("hyperliquid", "BTC/USDC:USDC"): lo})
    latest = pd.DataFrame(
        {
            "exchange": ["bybit", "hyperliquid"],
            "symbol": ["BTC/USDT:USDT", "BTC/USDC:USDC"],
            "spot_symbol": [None, None],
            "perp_half_spread_bps": [0.5, 1.0],
            "spot_half_spread_bps": [np.nan, np.nan],
        }
    ).iloc[0:0]  # no spot legs: only perp-perp, costed on fees alone
    fees = o.FeeSchedule({"bybit": {"spot": 10, "swap": 5.5}, "hyperliquid": {"spot": 7, "swap": 4.5}})
    out = o.rank_opportunities(hourly, latest, fees, horizon_h=72, as_of=pd.Timestamp("2026-01-09"))
    assert len(out) == 1
    row = out.iloc[0]
    assert (row.strategy, row.short_exchange, row.long_exchange) == ("perp_perp", "bybit", "hyperliquid")
    spread = hi - lo
    fit = o.fit_ar1(spread)
    expected = o.expected_mean(spread[-1], fit.mu, fit.phi, 72)
    cost = 2 * (5.5 + 4.5) / 1e4
    assert row.entry_cost_bps == pytest.approx(20.0)
    assert row.expected_carry_apr == pytest.approx(abs(expected))
    assert row.net_carry_apr == pytest.approx(abs(expected) - cost * 8760 / 72)
    assert row.break_even_h == pytest.approx(cost / (abs(expected) / 8760))
    assert row.same_sign_share == pytest.approx(np.mean(spread > 0))
    assert row["rank"] == 1


def test_cash_and_carry_charges_both_legs_fees_and_half_spreads_and_ranks_by_net_carry():
    n = 100
    hourly = _hourly(
        {
            ("binance", "ETH/USDT:USDT"): np.full(n, 0.20) + _ar1(0.5, 0, n, 0.001),
            ("bybit", "ETH/USDT:USDT"): np.full(n, 0.10),
        }
    )
    latest = pd.DataFrame(
        {
            "exchange": ["binance", "bybit"],
            "symbol": ["ETH/USDT:USDT", "ETH/USDT:USDT"],
            "spot_symbol": ["ETH/USDT", "ETH/USDT"],
            "perp_half_spread_bps": [1.0, 2.0],
            "spot_half_spread_bps": [1.5, 3.0],
        }
    )
    out = o.rank_opportunities(hourly, latest, o.FeeSchedule(), horizon_h=168, as_of=pd.Timestamp("2026-01-05"))
    cnc = out[out.strategy == "cash_carry"].set_index("long_exchange")
    binance = cnc.loc["binance"]
    assert binance.long_symbol == "ETH/USDT" and binance.short_symbol == "ETH/USDT:USDT"
    assert binance.entry_cost_bps == pytest.approx(2 * (10 + 5) + 2 * (1.5 + 1.0))
    assert cnc.loc["bybit"].entry_cost_bps == pytest.approx(2 * (10 + 5.5) + 2 * (3.0 + 2.0))
    assert out["net_carry_apr"].is_monotonic_decreasing
    assert out["rank"].tolist() == list(range(1, len(out) + 1))


def test_a_venue_without_fees_and_no_default_is_a_clear_error():
    fees = o.FeeSchedule({"bybit": {"swap": 5.5}})
    with pytest.raises(KeyError, match="'spot' fee for exchange 'bybit'"):
        fees.fee_bps("bybit", "spot")


def _negative_funding_on_binance(n: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ETH perp on binance paid -30 % APR every hour (longs receive), with its spot leg quoted."""
    hourly = _hourly({("binance", "ETH/USDT:USDT"): np.full(n, -0.30)})
    latest = pd.DataFrame(
        {
            "exchange": ["binance"],
            "symbol": ["ETH/USDT:USDT"],
            "spot_symbol": ["ETH/USDT"],
            "perp_half_spread_bps": [1.0],
            "spot_half_spread_bps": [2.0],
        }
    )
    return hourly, latest


def test_reverse_cash_and_carry_is_not_ranked_without_a_known_borrow_rate():
    hourly, latest = _negative_funding_on_binance()
    out = o.rank_opportunities(hourly, latest, o.FeeSchedule(), horizon_h=168, as_of=pd.Timestamp("2026-01-03"))
    assert out.empty
    # a rate for another asset or venue does not make ETH on binance borrowable
    other = o.BorrowRates({"binance": {"BTC": 0.05}, "bybit": {"*": 0.05}})
    out = o.rank_opportunities(hourly, latest, o.FeeSchedule(), 168, pd.Timestamp("2026-01-03"), borrow=other)
    assert out.empty


@pytest.mark.parametrize(
    "borrow,rate",
    [
        (o.BorrowRates({"binance": {"ETH": 0.08}}), 0.08),
        (o.BorrowRates({"binance": {"*": 0.12}}), 0.12),
        # a captured rate wins over the configured one
        (
            o.BorrowRates({"binance": {"ETH": 0.08}}).with_captured(
                pd.DataFrame({"exchange": ["binance"], "asset": ["ETH"], "borrow_apr": [0.15]})
            ),
            0.15,
        ),
    ],
)
def test_reverse_cash_and_carry_with_a_known_borrow_rate_is_ranked_net_of_it(borrow, rate):
    hourly, latest = _negative_funding_on_binance()
    out = o.rank_opportunities(hourly, latest, o.FeeSchedule(), 168, pd.Timestamp("2026-01-03"), borrow=borrow)
    assert len(out) == 1
    row = out.iloc[0]
    # long the perp (it receives 30 %), short the borrowed spot
    assert (row.long_exchange, row.long_symbol, row.short_symbol) == ("binance", "ETH/USDT:USDT", "ETH/USDT")
    # by hand: binance fees 10 bps spot, 5 bps perp, both legs in and out, plus both half-spreads twice
    cost = (2 * (10 + 5) + 2 * (2.0 + 1.0)) / 1e4
    assert row.borrow_apr == pytest.approx(rate)
    assert row.expected_carry_apr == pytest.approx(0.30)
    assert row.net_carry_apr == pytest.approx(0.30 - rate - cost * 8760 / 168)
    assert row.break_even_h == pytest.approx(cost / ((0.30 - rate) / 8760))


def test_forward_cash_and_carry_pays_no_borrow():
    hourly = _hourly({("binance", "ETH/USDT:USDT"): np.full(60, 0.30)})
    _, latest = _negative_funding_on_binance()
    borrow = o.BorrowRates({"binance": {"ETH": 0.08}})
    row = o.rank_opportunities(hourly, latest, o.FeeSchedule(), 168, pd.Timestamp("2026-01-03"), borrow=borrow).iloc[0]
    assert (row.long_symbol, row.short_symbol, row.borrow_apr) == ("ETH/USDT", "ETH/USDT:USDT", 0.0)


def test_a_bad_borrow_rate_names_the_venue_and_asset():
    with pytest.raises(ValueError, match=r"borrow_apr\.binance\.ETH: -0\.1"):
        o.BorrowRates({"binance": {"ETH": -0.1}})
    with pytest.raises(ValueError, match=r"borrow_rates okx BTC: nan"):
        o.BorrowRates().with_captured(pd.DataFrame({"exchange": ["okx"], "asset": ["BTC"], "borrow_apr": [np.nan]}))
