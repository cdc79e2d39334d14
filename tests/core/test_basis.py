"""Basis vs an independent pandas computation on synthetic quotes with known prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import basis as b
from fundarb_dagster.core.funding import INTERVAL_COLUMNS
from fundarb_dagster.core.sources.sim import venues as sim_venues
from fundarb_dagster.core.sources.sim.funding import funding_from_average


def _tickers(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    t0 = 1_767_225_600_000
    for exchange, symbol, base in [
        ("binance", "BTC/USDT:USDT", 100_000.0),
        ("binance", "BTC/USDT", 99_950.0),
        ("hyperliquid", "BTC/USDC:USDC", 100_020.0),
        ("hyperliquid", "BTC/USDC", 99_990.0),
    ]:
        for ts in sorted(rng.integers(t0, t0 + 2 * 3_600_000, 300)):
            mid = base * (1 + rng.normal(0, 1e-4))
            half = mid * rng.uniform(0.5e-4, 2e-4)
            perp = ":" in symbol
            rows.append(
                {
                    "exchange": exchange,
                    "symbol": symbol,
                    "ts_ms": int(ts),
                    "bid": mid - half,
                    "ask": mid + half,
                    "mark_price": mid * 1.0001 if perp else np.nan,
                    "index_price": mid if perp else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _intervals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exchange": ["binance", "hyperliquid"],
            "symbol": ["BTC/USDT:USDT", "BTC/USDC:USDC"],
            "valid_from": pd.to_datetime(["2025-01-01", "2025-01-01"]),
            "valid_to": pd.NaT,
            "interval_h": [8.0, 1.0],
            "cap": np.nan,
            "floor": np.nan,
            "source": "reported",
        }
    )[INTERVAL_COLUMNS]


def test_pairs_match_each_perp_with_its_spot_on_the_same_venue():
    inst = pd.DataFrame(
        {
            "exchange": ["binance", "binance", "bybit", "bybit"],
            "symbol": ["BTC/USDT:USDT", "BTC/USDT", "ETH/USDT:USDT", "ETH/USDC"],
        }
    )
    pairs = b.pair_instruments(inst).set_index(["exchange", "symbol"])
    assert pairs.loc[("binance", "BTC/USDT:USDT"), "spot_symbol"] == "BTC/USDT"
    assert pairs.loc[("bybit", "ETH/USDT:USDT"), "spot_symbol"] == "ETH/USDC"  # stablecoin stand-in
    assert b.underlying_of("1000PEPE/USDT:USDT") == "PEPE"


def test_basis_at_1m_and_1h_matches_an_independent_pandas_resample():
    tickers = _tickers()
    pairs = b.pair_instruments(tickers[["exchange", "symbol"]].drop_duplicates())
    for timeframe, rule in (("1m", "1min"), ("1h", "1h")):
        got = b.compute_basis(b.last_quotes(tickers, timeframe), pairs, _intervals(), timeframe)
        # Independent: resample().last() per instrument on a DatetimeIndex.
        t = tickers.assign(t=pd.to_datetime(tickers["ts_ms"], unit="ms")).sort_values("t")
        last = (
            t.set_index("t")
            .groupby(["exchange", "symbol"])[["bid", "ask", "mark_price", "index_price"]]
            .resample(rule)
            .last()
        )
        last = last.dropna(subset=["bid"]).reset_index()
        # premium period: binance pays a premium once per 8 h interval; hyperliquid settles hourly, 1/8 of an
        # 8-hour rate each time: also once per 8 h
        for exchange, perp, spot, period_h in (
            ("binance", "BTC/USDT:USDT", "BTC/USDT", 8.0),
            ("hyperliquid", "BTC/USDC:USDC", "BTC/USDC", 8.0),
        ):
            p = last[(last.exchange == exchange) & (last.symbol == perp)].set_index("t")
            s = last[(last.exchange == exchange) & (last.symbol == spot)].set_index("t")
            common = p.index.intersection(s.index)
            pm = (p.loc[common, "bid"] + p.loc[common, "ask"]) / 2
            sm = (s.loc[common, "bid"] + s.loc[common, "ask"]) / 2
            expected_bps = (pm / sm - 1) * 10_000
            rows = got[(got.exchange == exchange) & (got.symbol == perp)].set_index("ts").loc[common]
            assert len(rows) == len(common) > 0
            np.testing.assert_allclose(rows["basis_bps"], expected_bps, rtol=1e-9)
            np.testing.assert_allclose(rows["basis_apr"], expected_bps / 1e4 * 8760 / period_h, rtol=1e-9)
            np.testing.assert_allclose(
                rows["perp_half_spread_bps"], (p.loc[common, "ask"] - p.loc[common, "bid"]) / 2 / pm * 1e4, rtol=1e-9
            )
            np.testing.assert_allclose(
                rows["mark_index_bps"],
                (p.loc[common, "mark_price"] / p.loc[common, "index_price"] - 1) * 1e4,
                rtol=1e-9,
            )


def test_crossed_or_one_sided_books_give_no_spread_not_a_negative_cost():
    quotes = pd.DataFrame(
        {
            "exchange": "x",
            "symbol": ["A/USDT:USDT", "A/USDT"],
            "ts": pd.Timestamp("2026-01-01"),
            "bid": [101.0, 100.0],
            "ask": [100.0, 100.2],  # the perp book is crossed
            "mark_price": [100.5, np.nan],
            "index_price": [100.4, np.nan],
        }
    )
    pairs = b.pair_instruments(quotes[["exchange", "symbol"]])
    out = b.compute_basis(quotes, pairs, pd.DataFrame(columns=INTERVAL_COLUMNS), "1m")
    assert np.isnan(out["perp_half_spread_bps"].iloc[0]) and np.isnan(out["basis_bps"].iloc[0])
    assert out["spot_half_spread_bps"].iloc[0] > 0


def _one_quote(exchange: str, perp: str, spot: str, premium: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exchange": exchange,
            "symbol": [perp, spot],
            "ts": pd.Timestamp("2026-01-01"),
            "bid": [100.0 * (1 + premium) - 0.01, 99.99],
            "ask": [100.0 * (1 + premium) + 0.01, 100.01],
            "mark_price": [100.0 * (1 + premium), np.nan],
            "index_price": [100.0, np.nan],
        }
    )


@pytest.mark.parametrize("venue,interval_h", [("binance", 8.0), ("binance", 4.0), ("bybit", 8.0), ("hyperliquid", 1.0)])
def test_basis_apr_is_the_carry_the_venues_funding_rule_pays_for_a_persisting_premium(venue, interval_h):
    """Independent: the simulator's model of each venue's documented funding formula (`sources/sim/funding.py`:
    binance/bybit `P + clamp(I - P)` per interval, hyperliquid an 8-hour rate paid 1/8 hourly). For a premium
    that persists beyond the clamp's dead band, every extra basis point of premium must add as much to
    basis_apr as to the funding a year of that venue's settlements pays."""
    spec = sim_venues.VENUES[venue]
    perp, spot = f"BTC/{spec.quote}:{spec.quote}", f"BTC/{spec.quote}"
    intervals = pd.DataFrame(
        {"exchange": [venue], "symbol": [perp], "valid_from": pd.Timestamp("2025-01-01"), "valid_to": pd.NaT,
         "interval_h": [interval_h], "cap": np.nan, "floor": np.nan, "source": "reported"}
    )[INTERVAL_COLUMNS]  # fmt: skip

    def funding_apr(premium: float) -> float:
        rate = funding_from_average(premium, interval_h, spec.funding_style, 1.0, -1.0, spec.interest_8h, spec.clamp)
        return rate * (8760 / interval_h)  # settlements a year x rate each

    def basis_apr(premium: float) -> float:
        quotes = _one_quote(venue, perp, spot, premium)
        row = b.compute_basis(quotes, b.pair_instruments(quotes[["exchange", "symbol"]]), intervals, "1h")
        return float(row["basis_apr"].iloc[0])

    lo, hi = 0.002, 0.003  # 20 and 30 bp: beyond the 5 bp dead band of every venue
    slope_funding = (funding_apr(hi) - funding_apr(lo)) / (hi - lo)
    slope_basis = (basis_apr(hi) - basis_apr(lo)) / (hi - lo)
    assert slope_basis == pytest.approx(slope_funding, rel=1e-6)
    assert slope_basis == pytest.approx(8760 / (8.0 if venue == "hyperliquid" else interval_h), rel=1e-6)


def test_the_same_basis_is_the_same_apr_on_an_8h_venue_and_on_hourly_hyperliquid():
    premium = 0.0012
    out = []
    for venue, quote in (("binance", "USDT"), ("hyperliquid", "USDC")):
        quotes = _one_quote(venue, f"ETH/{quote}:{quote}", f"ETH/{quote}", premium)
        intervals = pd.DataFrame(
            {"exchange": [venue], "symbol": [f"ETH/{quote}:{quote}"], "valid_from": pd.Timestamp("2025-01-01"),
             "valid_to": pd.NaT, "interval_h": [8.0 if venue == "binance" else 1.0], "cap": np.nan,
             "floor": np.nan, "source": "reported"}
        )[INTERVAL_COLUMNS]  # fmt: skip
        pairs = b.pair_instruments(quotes[["exchange", "symbol"]])
        out.append(float(b.compute_basis(quotes, pairs, intervals, "1h")["basis_apr"].iloc[0]))
    # a premium of 12 bp held a year: 1,095 eight-hour payments (binance), or 8,760 hourly eighths (hyperliquid)
    hourly_eighths = sum(premium / 8 for _ in range(8760))
    assert out[0] == pytest.approx(out[1], rel=1e-12)
    assert out[1] == pytest.approx(hourly_eighths, rel=1e-9)


def test_expiry_basis_annualizes_a_dated_futures_premium_to_its_expiry() -> None:
    """A future 30 days from expiry quoted 1 % over spot carries 1 % x 365 / 30 a year; at expiry nothing."""
    t0 = pd.Timestamp("2022-04-27 08:00")
    expiry_ms = int(pd.Timestamp("2022-05-27 08:00").timestamp() * 1000)
    quotes = pd.DataFrame(
        [
            ("okx", "BTC/USD:BTC-220527", t0, 30_290.0, 30_310.0),
            ("okx", "BTC/USDT", t0, 29_990.0, 30_010.0),
            ("okx", "BTC/USD:BTC-220527", t0 + pd.Timedelta(days=30), 30_000.0, 30_002.0),
            ("okx", "BTC/USDT", t0 + pd.Timedelta(days=30), 30_000.0, 30_002.0),
            ("okx", "BTC/USDT", t0 + pd.Timedelta(days=1), 30_000.0, 30_002.0),  # no future quote: no row
        ],
        columns=["exchange", "symbol", "ts", "bid", "ask"],
    ).assign(mark_price=np.nan, index_price=np.nan)
    futures = pd.DataFrame({"exchange": ["okx"], "symbol": ["BTC/USD:BTC-220527"], "expiry_ms": [expiry_ms]})
    out = b.expiry_basis(quotes, futures)
    assert list(out.columns) == b.EXPIRY_BASIS_COLUMNS and len(out) == 2
    first, last = out.iloc[0], out.iloc[1]
    assert first["spot_symbol"] == "BTC/USDT" and first["days_to_expiry"] == 30.0
    assert first["basis_bps"] == pytest.approx(100.0)
    assert first["basis_to_expiry_apr"] == pytest.approx(0.01 * 365 / 30)
    assert last["days_to_expiry"] == 0.0 and last["basis_bps"] == 0.0 and np.isnan(last["basis_to_expiry_apr"])
