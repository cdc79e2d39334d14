"""core/funding_views: the funding heat map and the per-pair spread summary, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.funding_views import (
    funding_heat,
    funding_heat_png,
    spread_png,
    spread_summary,
    widest_pairs,
    widest_underlyings,
)

END = pd.Timestamp("2026-03-08 00:00")


def _settlements(exchange: str, symbol: str, interval_h: int, rate: float, days: int = 7) -> pd.DataFrame:
    ts = pd.date_range(END - pd.Timedelta(days=days), END, freq=f"{interval_h}h", inclusive="left")
    columns = {"exchange": exchange, "symbol": symbol, "funding_ts": ts, "funding_rate": rate}
    return pd.DataFrame({**columns, "interval_h": float(interval_h)})


def test_heat_map_is_time_weighted_apr_per_venue_and_underlying_for_8h_and_1h_venues():
    hourly = _settlements("hyperliquid", "BTC/USDC:USDC", 1, 0.0000125)  # 0.0000125 x 8760 = 10.95 %
    eight = _settlements("binance", "BTC/USDT:USDT", 8, 0.0001)  # 0.0001 x 1095 = 10.95 %
    # the last day on binance ETH pays 3x what the rest of the week paid
    eth = _settlements("binance", "ETH/USDT:USDT", 8, 0.0001)
    eth.loc[eth["funding_ts"] >= END - pd.Timedelta(days=1), "funding_rate"] = 0.0003
    rates = pd.concat([hourly, eight, eth], ignore_index=True)

    day = funding_heat(rates, END, 24)
    week = funding_heat(rates, END, 168)
    assert list(day.index) == ["binance", "hyperliquid"] and list(day.columns) == ["BTC", "ETH"]
    assert day.loc["binance", "BTC"] == pytest.approx(0.0001 * 8760 / 8)
    assert day.loc["hyperliquid", "BTC"] == pytest.approx(0.0000125 * 8760)
    assert day.loc["binance", "ETH"] == pytest.approx(0.0003 * 8760 / 8)
    # the week: 3 of 21 settlements at 3x -> (18 x 1 + 3 x 3) / 21 of the base APR
    assert week.loc["binance", "ETH"] == pytest.approx(0.0001 * 1095 * 27 / 21)
    assert np.isnan(day.loc["hyperliquid", "ETH"])  # no ETH settlement there: empty, not zero
    assert funding_heat_png({"last day": day, "last week": week}, END)[:8] == b"\x89PNG\r\n\x1a\n"


def test_heat_map_of_a_window_without_settlements_is_empty():
    rates = _settlements("binance", "BTC/USDT:USDT", 8, 0.0001, days=7)
    assert funding_heat(rates, END - pd.Timedelta(days=8), 24).empty
    with pytest.raises(ValueError, match="empty"):
        funding_heat_png({"last day": funding_heat(rates, END - pd.Timedelta(days=8), 24)}, END)


def test_heat_map_picture_draws_the_widest_underlyings_of_many():
    """40 underlyings on 2 venues: the picture draws the 24 whose largest |APR| on any venue and window is
    widest (an obvious ranking here: underlying k pays k bps a settlement on one venue, one negative outlier);
    the tables keep all 40."""
    frames = []
    for k in range(40):
        frames.append(_settlements("binance", f"U{k:02d}/USDT:USDT", 8, (k + 1) * 1e-5))
        frames.append(_settlements("bybit", f"U{k:02d}/USDT:USDT", 8, -0.01 if k == 3 else 1e-6))
    rates = pd.concat(frames, ignore_index=True)
    heats = {"last day": funding_heat(rates, END, 24), "last week": funding_heat(rates, END, 168)}
    assert heats["last day"].shape == (2, 40)
    assert widest_underlyings(heats, 24) == sorted(["U03", *[f"U{k:02d}" for k in range(17, 40)]])
    assert widest_underlyings(heats, 50) == [f"U{k:02d}" for k in range(40)]
    assert funding_heat_png(heats, END)[:8] == b"\x89PNG\r\n\x1a\n"


def test_spread_summary_has_latest_day_and_week_means_widest_first():
    ts = pd.date_range(END - pd.Timedelta(days=7), END, freq="1h", inclusive="left")
    rows = []
    for i, t in enumerate(ts):
        rows.append(("BTC", "binance", "bybit", t, 0.01 if t < END - pd.Timedelta(days=1) else 0.05, False, False, 1.0))
        rows.append(("ETH", "binance", "bybit", t, -0.2, i == len(ts) - 1, False, 2.0))
    spreads = pd.DataFrame(rows, columns=["underlying", "exchange_a", "exchange_b", "ts", "funding_spread_apr",
                                          "is_predicted_a", "is_predicted_b", "basis_spread_bps"])  # fmt: skip
    summary = spread_summary(spreads, END)
    assert list(summary["underlying"]) == ["ETH", "BTC"]  # |-0.2| is the widest
    btc = summary.set_index("underlying").loc["BTC"]
    assert btc["funding_spread_apr"] == pytest.approx(0.05)
    assert btc["day_mean_apr"] == pytest.approx(0.05)
    assert btc["week_mean_apr"] == pytest.approx((144 * 0.01 + 24 * 0.05) / 168)
    assert btc["latest_ts"] == ts[-1]
    assert spread_png(spreads)[:4] == b"\x89PNG"


def test_the_spread_plot_draws_the_widest_pairs_of_many():
    """300 pairs (100 underlyings on 3 venues) drew 300 panels sharing an axis: minutes a run. The plot takes
    the pairs whose latest hour is widest; checked against a plain walk over the pairs."""
    rng = np.random.default_rng(3)
    ts = pd.date_range(END - pd.Timedelta(days=2), END, freq="1h", inclusive="left")
    rows = []
    for u in range(40):
        for a, b in (("binance", "bybit"), ("binance", "okx"), ("bybit", "okx")):
            for t, value in zip(ts, rng.normal(0, 0.1, len(ts)), strict=True):
                rows.append((f"U{u:02d}", a, b, t, value, False, False, np.nan))
    spreads = pd.DataFrame(rows, columns=["underlying", "exchange_a", "exchange_b", "ts", "funding_spread_apr",
                                          "is_predicted_a", "is_predicted_b", "basis_spread_bps"])  # fmt: skip
    latest = {}
    for row in spreads.itertuples(index=False):  # rows are in time order per pair: the last one wins
        latest[(row.underlying, row.exchange_a, row.exchange_b)] = abs(row.funding_spread_apr)
    expected = sorted(latest, key=lambda pair: -latest[pair])[:12]
    assert widest_pairs(spreads, 12) == expected
    assert len(widest_pairs(spreads, 500)) == 120
    assert spread_png(spreads)[:4] == b"\x89PNG"
