"""The engine on data served by the simulated exchange (core/sources/sim/) through its ccxt interface:
hourly candles, settled funding history with each venue's interval, point-in-time predicted rates."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.backtest import BacktestParams, build_panel, get_strategy, run_backtest
from fundarb_dagster.core.backtest.panel import make_market
from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.units import HOUR_MS

from .reference_loop import reference_backtest

START = "2026-06-01T00:00:00Z"
DAYS = 6


async def collect() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list]:
    config = SimConfig(seed=3, speed=1000.0, start=START)
    since = config.start_ms - DAYS * 24 * HOUR_MS
    prices, settlements, predictions, markets = [], [], [], []
    for venue in ("binance", "bybit", "hyperliquid"):
        ex = SimExchange(venue, config)
        await ex.load_markets()
        for symbol, market in ex.markets.items():
            if market["base"] not in ("BTC", "ETH"):
                continue
            kind = "perp" if market.get("swap") else "spot"
            markets.append(make_market(venue, symbol, market["base"], kind))
            candles = await ex.fetch_ohlcv(
                symbol, "1h", since=since, limit=DAYS * 24, params={"until": config.start_ms - 1}
            )
            c = pd.DataFrame(candles, columns=["open_ms", "open", "high", "low", "close", "volume"])
            frame = pd.DataFrame(
                {
                    "ts_ms": c["open_ms"].astype("int64") + HOUR_MS,
                    "exchange": venue,
                    "symbol": symbol,
                    "mid": c["close"],
                    "ref_high": c["high"],
                    "ref_low": c["low"],
                }
            )
            if kind == "perp":
                states = [ex.funding_rate_at(symbol, int(t)) for t in frame["ts_ms"]]
                frame["ref"] = [s["markPrice"] for s in states]
                predictions.append(
                    pd.DataFrame(
                        {
                            "exchange": venue,
                            "symbol": symbol,
                            "ts_ms": frame["ts_ms"],
                            "predicted_rate": [s["fundingRate"] for s in states],
                            "interval_h": [float(s["interval"][:-1]) for s in states],
                        }
                    )
                )
                history = await ex.fetch_funding_rate_history(
                    symbol, since=since, limit=1000, params={"until": config.start_ms}
                )
                settlements.append(
                    pd.DataFrame(
                        {
                            "exchange": venue,
                            "symbol": symbol,
                            "funding_ts_ms": [h["timestamp"] for h in history],
                            "funding_rate": [h["fundingRate"] for h in history],
                            "interval_h": [float(h["info"]["fundingIntervalHours"]) for h in history],
                            "ref_price": [float(h["info"]["markPrice"]) for h in history],
                        }
                    )
                )
            prices.append(frame)
        await ex.close()
    return pd.concat(prices), pd.concat(settlements), pd.concat(predictions), markets


@pytest.fixture(scope="module")
def sim_exchange_panel():  # noqa: ANN201
    prices, settlements, predictions, markets = asyncio.run(collect())
    return build_panel(prices, markets, settlements, predictions), settlements


def test_sim_exchange_panel_has_8h_and_1h_settlements(sim_exchange_panel) -> None:  # noqa: ANN001
    panel, settlements = sim_exchange_panel
    per_day = settlements.groupby("exchange")["funding_ts_ms"].count() / DAYS / 2
    assert per_day["hyperliquid"] > 20 and per_day["binance"] <= 6  # hourly vs 8h (or 4h) venues
    assert panel.settlements > 0 and np.isfinite(panel.expected_apr[:, [m.is_perp for m in panel.markets]]).mean() > 0.9


@pytest.mark.parametrize("strategy", ["cash_carry", "perp_perp"])
def test_engine_matches_event_loop_on_sim_exchange_data(sim_exchange_panel, strategy: str) -> None:  # noqa: ANN001
    panel, _ = sim_exchange_panel
    pairs = get_strategy(strategy).pairs(panel, {"borrow_apr": 0.05})
    assert len(pairs.names) >= 2
    for params in (
        BacktestParams(enter_apr=0.02, exit_apr=0.0, leverage=10, rebalance_h=12),
        BacktestParams(enter_apr=0.05, exit_apr=0.01, max_hold_h=24, stop_distance=0.05, leverage=4),
    ):
        r = run_backtest(panel, pairs, params)
        ref = reference_backtest(panel, pairs, params)
        assert r.metrics["trade_count"] > 0 and r.attribution["funding"] != 0.0  # positions were really held
        np.testing.assert_array_equal(r.arrays["A"][0], ref["direction"])
        np.testing.assert_allclose(r.equity["equity"], ref["equity"], rtol=1e-9, atol=0)
        for key, value in ref["totals"].items():
            assert r.attribution[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
