"""Panels from the real recorded fixtures (read-only CSVs in ../shared/fixtures) and from the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest.panel import Panel, build_panel, make_market
from fundarb_dagster.core.backtest.synthetic import synthetic_panel
from fundarb_dagster.core.units import HOUR_MS

VENUE_SYMBOLS = {
    ("binance", "BTCUSDT"): ("BTC/USDT:USDT", "BTC"),
    ("binance", "ETHUSDT"): ("ETH/USDT:USDT", "ETH"),
    ("bybit", "BTCUSDT"): ("BTC/USDT:USDT", "BTC"),
    ("bybit", "ETHUSDT"): ("ETH/USDT:USDT", "ETH"),
    ("hyperliquid", "BTC"): ("BTC/USDC:USDC", "BTC"),
    ("hyperliquid", "ETH"): ("ETH/USDC:USDC", "ETH"),
}


def real_funding_panel(fixtures: Path, days: int | None = None) -> Panel:
    """A year of real settled funding (binance/bybit 8h, hyperliquid 1h) on an hourly grid. Prices: binance's
    mark at its settlements, carried forward (stale, never interpolated from the future), used for every
    venue's perp of that underlying (the fixture has no other prices); hyperliquid's oracle is approximated
    by it too. Expected funding = the last settled rate, known at its settlement time."""
    raw = pd.read_csv(fixtures / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    raw["symbol"] = [VENUE_SYMBOLS[(v, s)][0] for v, s in zip(raw["venue"], raw["venue_symbol"], strict=True)]
    raw["underlying"] = [VENUE_SYMBOLS[(v, s)][1] for v, s in zip(raw["venue"], raw["venue_symbol"], strict=True)]
    raw = raw.rename(
        columns={"venue": "exchange", "settlement_time_ms_utc": "funding_ts_ms", "interval_hours": "interval_h"}
    )
    if days:
        raw = raw[raw["funding_ts_ms"] < raw["funding_ts_ms"].min() + days * 24 * HOUR_MS]
    marks = raw[raw["exchange"] == "binance"][["funding_ts_ms", "underlying", "mark_price"]]
    start = (raw["funding_ts_ms"].min() // HOUR_MS + 1) * HOUR_MS
    end = (raw["funding_ts_ms"].max() // HOUR_MS) * HOUR_MS
    grid = np.arange(start, end + 1, HOUR_MS)
    keys = sorted({(e, s, u) for e, s, u in zip(raw["exchange"], raw["symbol"], raw["underlying"], strict=True)})
    markets = [make_market(e, s, u, "perp") for e, s, u in keys]
    prices = []
    for e, s, u in keys:
        m = marks[marks["underlying"] == u].sort_values("funding_ts_ms")
        pos = np.searchsorted(m["funding_ts_ms"].to_numpy(), grid, side="right") - 1
        px = np.where(pos >= 0, m["mark_price"].to_numpy()[np.clip(pos, 0, None)], np.nan)
        prices.append(pd.DataFrame({"ts_ms": grid, "exchange": e, "symbol": s, "mid": px, "ref": px}))
    settlements = raw[["exchange", "symbol", "funding_ts_ms", "funding_rate", "interval_h"]].copy()
    settlements["ref_price"] = np.nan  # the bar's reference price at settlement
    return build_panel(pd.concat(prices, ignore_index=True), markets, settlements)


def xrp_panel(fixtures: Path) -> Panel:
    """Binance XRP/USDT perp: 1h perp candles (mid = close), 1h mark candles (reference price, high/low for the
    liquidation check), 8h settled funding with jittered times. The spot leg is proxied by the mark close (the
    fixture has no XRP/USDT spot candles), so basis PnL is perp close vs mark."""
    d = fixtures / "binance_xrp"
    fut = pd.read_csv(d / "XRP_USDT_USDT-1h-futures.csv")
    mark = pd.read_csv(d / "XRP_USDT_USDT-1h-mark.csv")
    fund = pd.read_csv(d / "XRP_USDT_USDT-8h-funding_rate.csv")
    both = fut.merge(mark, on="time_ms_utc", suffixes=("", "_mark"))
    known = both["time_ms_utc"] + HOUR_MS  # a bar is known at its close
    perp = pd.DataFrame(
        {
            "ts_ms": known,
            "exchange": "binance",
            "symbol": "XRP/USDT:USDT",
            "mid": both["close"],
            "ref": both["close_mark"],
            "ref_high": both["high_mark"],
            "ref_low": both["low_mark"],
        }
    )
    spot = pd.DataFrame({"ts_ms": known, "exchange": "binance", "symbol": "XRP/USDT", "mid": both["close_mark"]})
    settlements = pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": "XRP/USDT:USDT",
            "funding_ts_ms": fund["time_ms_utc"],
            "funding_rate": fund["funding_rate"],
            "interval_h": 8.0,
        }
    )
    markets = [
        make_market("binance", "XRP/USDT:USDT", "XRP", "perp"),
        make_market("binance", "XRP/USDT", "XRP", "spot"),
    ]
    return build_panel(pd.concat([perp, spot], ignore_index=True), markets, settlements)


@pytest.fixture(scope="session")
def funding_panel(fixtures_dir: Path) -> Panel:
    return real_funding_panel(fixtures_dir)


@pytest.fixture(scope="session")
def xrp(fixtures_dir: Path) -> Panel:
    return xrp_panel(fixtures_dir)


@pytest.fixture(scope="session")
def sim_panel() -> Panel:
    return synthetic_panel(24 * 45, seed=11)
