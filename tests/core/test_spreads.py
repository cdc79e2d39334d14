"""Cross-venue spreads of 8h and 1h venues on a common hourly grid vs independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import funding as f
from fundarb_dagster.core import spreads as s


@pytest.fixture(scope="module")
def fixture_rates(fixtures_dir) -> pd.DataFrame:
    raw = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    raw = raw.rename(
        columns={"venue": "exchange", "canonical_symbol": "symbol", "settlement_time_ms_utc": "funding_ts_ms"}
    )
    # BTC-USDT-PERP -> the ccxt unified BTC/USDT:USDT the warehouse uses
    parts = raw["symbol"].str.split("-", expand=True)
    raw["symbol"] = parts[0] + "/" + parts[1] + ":" + parts[1]
    obs = raw[["exchange", "symbol", "funding_ts_ms", "interval_hours"]].rename(
        columns={"funding_ts_ms": "ts_ms", "interval_hours": "interval_h"}
    )
    intervals = f.build_intervals(obs.assign(cap=np.nan, floor=np.nan, source="reported"))
    return f.settled_rates(raw, intervals, None)


def test_8h_settlement_spreads_its_rate_evenly_over_the_8_hours_it_accrued(fixture_rates):
    start, end = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-03")
    hourly = s.hourly_rates(fixture_rates, None, start, end)
    binance = hourly[(hourly.exchange == "binance") & (hourly.symbol == "BTC/USDT:USDT")].set_index("ts")
    assert len(binance) == 48
    settle = fixture_rates[(fixture_rates.exchange == "binance") & (fixture_rates.symbol == "BTC/USDT:USDT")]
    rate_0800 = settle.set_index("funding_ts").loc[pd.Timestamp("2026-03-01 08:00"), "funding_rate"]
    for h in range(8):
        assert binance.loc[pd.Timestamp("2026-03-01") + pd.Timedelta(hours=h), "rate_per_hour"] == pytest.approx(
            rate_0800 / 8
        )


def test_spread_of_8h_vs_1h_venue_matches_an_independent_per_hour_computation(fixture_rates):
    start, end = pd.Timestamp("2026-02-01"), pd.Timestamp("2026-02-08")
    spreads = s.funding_spreads(s.hourly_rates(fixture_rates, None, start, end))
    got = spreads[
        (spreads.exchange_a == "binance")
        & (spreads.symbol_a == "BTC/USDT:USDT")
        & (spreads.exchange_b == "hyperliquid")
    ].set_index("ts")
    # Independent: plain Python loops over settlements.
    expected = {}
    per_hour = {"binance": {}, "hyperliquid": {}}
    for row in fixture_rates.itertuples():
        if row.symbol not in ("BTC/USDT:USDT", "BTC/USDC:USDC") or row.exchange not in per_hour:
            continue
        for k in range(1, int(row.interval_h) + 1):
            per_hour[row.exchange][row.funding_ts - pd.Timedelta(hours=k)] = row.funding_rate / row.interval_h
    for hour in pd.date_range(start, end, freq="h", inclusive="left"):
        if hour in per_hour["binance"] and hour in per_hour["hyperliquid"]:
            expected[hour] = (per_hour["binance"][hour] - per_hour["hyperliquid"][hour]) * 8760
    assert len(got) == len(expected) > 150
    np.testing.assert_allclose(got.loc[list(expected), "funding_spread_apr"].to_numpy(), list(expected.values()))
    assert set(spreads.underlying) == {"BTC", "ETH"}
    # 3 venues per underlying -> 3 pairs, each pair ordered once
    assert spreads.groupby("underlying")[["exchange_a", "exchange_b"]].apply(
        lambda g: len(g.drop_duplicates())
    ).tolist() == [3, 3]


def test_hours_not_yet_settled_use_the_last_prediction_known_before_the_hour_ended():
    rates = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "BTC/USDT:USDT",
            "funding_ts": [pd.Timestamp("2026-01-01 08:00")],
            "interval_h": 8.0,
            "rate_per_hour": 1e-5,
        }
    )
    predictions = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "BTC/USDT:USDT",
            "ts": pd.to_datetime(["2026-01-01 08:30", "2026-01-01 09:59", "2026-01-01 10:00"]),
            "funding_ts": pd.Timestamp("2026-01-01 16:00"),
            "interval_h": 8.0,
            "rate_per_hour": [2e-5, 3e-5, 4e-5],
        }
    )
    hourly = s.hourly_rates(rates, predictions, pd.Timestamp("2026-01-01 07:00"), pd.Timestamp("2026-01-01 11:00"))
    by_ts = hourly.set_index("ts")
    assert not by_ts.loc[pd.Timestamp("2026-01-01 07:00"), "is_predicted"]
    assert by_ts.loc[pd.Timestamp("2026-01-01 08:00"), "rate_per_hour"] == pytest.approx(2e-5)
    assert by_ts.loc[pd.Timestamp("2026-01-01 09:00"), "rate_per_hour"] == pytest.approx(3e-5)
    assert by_ts.loc[pd.Timestamp("2026-01-01 10:00"), "rate_per_hour"] == pytest.approx(4e-5)
    assert by_ts.loc[pd.Timestamp("2026-01-01 10:00"), "is_predicted"]


def test_basis_spread_joins_the_1h_basis_of_both_legs():
    hourly = pd.DataFrame(
        {
            "exchange": ["a", "b"],
            "symbol": ["ETH/USDT:USDT", "ETH/USDC:USDC"],
            "ts": pd.Timestamp("2026-01-01"),
            "rate_per_hour": [1e-5, 2e-5],
            "funding_apr": [0.0876, 0.1752],
            "is_predicted": False,
        }
    )
    basis = pd.DataFrame(
        {
            "exchange": ["a", "b"],
            "symbol": ["ETH/USDT:USDT", "ETH/USDC:USDC"],
            "ts": pd.Timestamp("2026-01-01"),
            "basis_bps": [5.0, -2.0],
        }
    )
    out = s.funding_spreads(hourly, basis)
    assert len(out) == 1
    assert out["funding_spread_apr"].iloc[0] == pytest.approx(-1e-5 * 8760)
    assert out["basis_spread_bps"].iloc[0] == pytest.approx(7.0)
