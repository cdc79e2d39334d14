"""The carry/cost arithmetic of the ranking, borrow for reverse cash-and-carry, and the forecast's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import opportunities as o
from fundarb_dagster.core.borrow import borrow_rows, rates_as_of

from .test_carry_forecast import ar1 as _ar1
from .test_carry_forecast import forecast_by_iteration


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
    expected = forecast_by_iteration(spread, 72)
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
    "borrow,rate,source",
    [
        (o.BorrowRates({"binance": {"ETH": 0.08}}), 0.08, "configured"),
        (o.BorrowRates({"binance": {"*": 0.12}}), 0.12, "configured"),
        # a captured rate wins over the configured one
        (
            o.BorrowRates({"binance": {"ETH": 0.08}}).with_captured(
                pd.DataFrame({"exchange": ["binance"], "asset": ["ETH"], "borrow_apr": [0.15]})
            ),
            0.15,
            "captured",
        ),
    ],
)
def test_reverse_cash_and_carry_with_a_known_borrow_rate_is_ranked_net_of_it(borrow, rate, source):
    hourly, latest = _negative_funding_on_binance()
    out = o.rank_opportunities(hourly, latest, o.FeeSchedule(), 168, pd.Timestamp("2026-01-03"), borrow=borrow)
    assert len(out) == 1
    row = out.iloc[0]
    # long the perp (it receives 30 %), short the borrowed spot
    assert (row.long_exchange, row.long_symbol, row.short_symbol) == ("binance", "ETH/USDT:USDT", "ETH/USDT")
    # by hand: binance fees 10 bps spot, 5 bps perp, both legs in and out, plus both half-spreads twice
    cost = (2 * (10 + 5) + 2 * (2.0 + 1.0)) / 1e4
    assert row.borrow_apr == pytest.approx(rate)
    assert row.borrow_source == source
    assert row.expected_carry_apr == pytest.approx(0.30)
    assert row.net_carry_apr == pytest.approx(0.30 - rate - cost * 8760 / 168)
    assert row.break_even_h == pytest.approx(cost / ((0.30 - rate) / 8760))


def test_forward_cash_and_carry_pays_no_borrow():
    hourly = _hourly({("binance", "ETH/USDT:USDT"): np.full(60, 0.30)})
    _, latest = _negative_funding_on_binance()
    borrow = o.BorrowRates({"binance": {"ETH": 0.08}})
    row = o.rank_opportunities(hourly, latest, o.FeeSchedule(), 168, pd.Timestamp("2026-01-03"), borrow=borrow).iloc[0]
    assert (row.long_symbol, row.short_symbol, row.borrow_apr) == ("ETH/USDT", "ETH/USDT:USDT", 0.0)
    assert row.borrow_source == "none"


def test_reverse_carry_is_ranked_net_of_the_captured_rate_in_force_at_as_of():
    """A captured path: 6 % from 00:00, 20 % from 18:00, 50 % from 23:00 (after the as-of hour 22:00). The ranking
    at 22:00 charges 20 %: the last rate published at or before as_of, never the later one."""
    hourly, latest = _negative_funding_on_binance()
    entries = [{"currency": "ETH", "rate": apr / 365, "period": 86_400_000,
                "timestamp": int(pd.Timestamp(f"2026-01-02 {hh}").value // 10**6)}
               for apr, hh in ((0.06, "00:00"), (0.20, "18:00"), (0.50, "23:00"))]  # fmt: skip
    rows = borrow_rows("binance", entries)
    as_of = pd.Timestamp("2026-01-02 22:00")
    captured = rates_as_of(rows, as_of)
    configured = o.BorrowRates({"binance": {"ETH": 0.08}})
    row = o.rank_opportunities(hourly, latest, o.FeeSchedule(), 168, as_of, borrow=configured.with_captured(captured))
    cost = (2 * (10 + 5) + 2 * (2.0 + 1.0)) / 1e4
    assert (row.iloc[0].borrow_apr, row.iloc[0].borrow_source) == (pytest.approx(0.20), "captured")
    assert row.iloc[0].net_carry_apr == pytest.approx(0.30 - 0.20 - cost * 8760 / 168)


def test_a_bad_borrow_rate_names_the_venue_and_asset():
    with pytest.raises(ValueError, match=r"borrow_apr\.binance\.ETH: -0\.1"):
        o.BorrowRates({"binance": {"ETH": -0.1}})
    with pytest.raises(ValueError, match=r"borrow_rates okx BTC: nan"):
        o.BorrowRates().with_captured(pd.DataFrame({"exchange": ["okx"], "asset": ["BTC"], "borrow_apr": [np.nan]}))


def test_the_demos_perp_perp_spread_trending_into_a_spike_is_ranked_by_its_run_not_the_spike():
    """The demo ranked perp-perp ETH at ~186 % net APR with same-sign share 0.14: the spread had climbed for two
    days into one spike hour, and the AR(1) (phi >= 1) carried the last hour over the horizon."""
    rng = np.random.default_rng(8)
    spread = np.r_[-0.05 + rng.normal(0, 0.01, 290), np.linspace(-0.05, 1.86, 46)]
    base = np.full(len(spread), 0.10)
    hourly = _hourly({("binance", "ETH/USDT:USDT"): base, ("hyperliquid", "ETH/USDC:USDC"): base + spread})
    as_of = pd.Timestamp("2026-01-01") + pd.Timedelta(hours=len(spread) - 1)
    window = o.ForecastWindow(lookback_h=336)
    out = o.rank_opportunities(hourly, pd.DataFrame(), o.FeeSchedule(), 168, as_of, min_obs=24, window=window)
    row = out.iloc[0]
    assert (row.short_exchange, row.long_exchange) == ("hyperliquid", "binance")
    assert row.current_apr == pytest.approx(1.86)
    assert row.expected_carry_apr == pytest.approx(forecast_by_iteration(spread, 168), rel=1e-9)
    assert row.expected_carry_apr < 0.35 and row.same_sign_share < 0.15
    assert row.run_h < 48 and row.run_apr == pytest.approx(np.mean(spread[-row.run_h :]))
    assert row.recent_median_apr == pytest.approx(np.median(spread[-72:]))


def test_forecast_errors_of_each_row_replay_the_forecast_on_the_hours_before_the_lookback():
    n, lookback, horizon, min_obs = 400, 200, 48, 24
    a, b = _ar1(0.97, 0.20, n, 0.05, seed=21), _ar1(0.9, 0.05, n, 0.02, seed=22)
    hourly = _hourly({("bybit", "SOL/USDT:USDT"): a, ("okx", "SOL/USDT:USDT"): b})
    as_of = pd.Timestamp("2026-01-01") + pd.Timedelta(hours=n - 1)
    window = o.ForecastWindow(lookback_h=lookback)
    out = o.rank_opportunities(hourly, pd.DataFrame(), o.FeeSchedule(), horizon, as_of, min_obs, None, window)
    row = out.iloc[0]
    spread = a - b
    assert row.n_obs == lookback
    assert row.expected_carry_apr == pytest.approx(abs(forecast_by_iteration(spread[-lookback:], horizon)))
    # independent replay: at each past hour i, the forecast from the look-back before it vs the next H hours
    new, old = [], []
    for i in range(min_obs, n - horizon + 1):
        history = spread[max(0, i - lookback) : i]
        realized = spread[i : i + horizon].mean()
        new.append(abs(forecast_by_iteration(history, horizon) - realized))
        fit = np.polyfit(history[:-1], history[1:], 1)  # slope, intercept: the AR(1) by least squares
        phi, mu = fit[0], (fit[1] / (1 - fit[0]) if 0 < fit[0] < 1 else history.mean())
        w = np.mean([phi**h for h in range(1, horizon + 1)]) if 0 < phi < 1 else (1.0 if phi >= 1 else 0.0)
        old.append(abs(mu + (history[-1] - mu) * w - realized))
    assert row.error_origins == len(new)
    assert row.forecast_mae_apr == pytest.approx(np.mean(new), rel=1e-9)
    assert row.forecast_max_err_apr == pytest.approx(np.max(new), rel=1e-9)
    assert row.last_hour_mae_apr == pytest.approx(np.mean(old), rel=1e-6)
    summary = o.forecast_error_summary(out).set_index("strategy").loc["perp_perp"]
    assert summary.origins == len(new) and summary.forecast_mae_apr == pytest.approx(np.mean(new), rel=1e-9)
