"""Imported history can be backtested: kline archives of other timeframes (8h, 1h) reach the bar tables of
their timeframe and every coarser one, basis comes from spot and perp bar closes where no quotes exist, and a
textbook carry rule runs on it, its funding P&L equal to an independent sum over the held settlements.

The funding rates and the perp's closes at each settlement are real (Binance BTCUSDT, the first 15 days of
`funding_2025_2026/`); the spot closes are the perp's less a constant basis; the archives are written in
Binance's public-data formats and go through `fundarb import` and real Dagster materializations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster import cli
from fundarb_dagster.defs.backtest.assets import backtest
from fundarb_dagster.defs.funding.assets import basis, funding_intervals, funding_predictions, funding_rates
from fundarb_dagster.defs.market.assets import ohlcv_1d, ohlcv_1h, ohlcv_1m, ohlcv_8h
from fundarb_dagster.defs.raw.assets import RAW_ASSETS, instruments
from tests.core.binance_archives import write_csv
from tests.defs.raw.landing_fixtures import query, run

H = 3_600_000
SETTLEMENTS = 45  # 15 days of 8h settlements
SPOT_DISCOUNT = 3e-4  # spot close = perp close x (1 - this)
ENTER_APR, UNITS = 0.1, 2.5  # enter when the last settled rate x 3 x 365 reaches 10 %; hold 2.5 BTC per leg


def _kline(t: int, step: int, o: float, c: float, volume: float) -> list:
    high, low = max(o, c) * 1.001, min(o, c) * 0.999
    return [t, f"{o:.6f}", f"{high:.6f}", f"{low:.6f}", f"{c:.6f}", volume, t + step - 1, 0, 0, 0, 0, 0]


def _closes_to_klines(opens_ms: np.ndarray, closes: np.ndarray, step: int) -> list[list]:
    previous = np.concatenate([[closes[0]], closes[:-1]])
    return [_kline(int(t), step, float(o), float(c), 10.0) for t, o, c in zip(opens_ms, previous, closes, strict=True)]


@pytest.fixture(scope="module")
def history(tmp_path_factory, fixtures_dir) -> dict:
    tmp = tmp_path_factory.mktemp("imported")
    real = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    btc = real[(real["venue"] == "binance") & (real["venue_symbol"] == "BTCUSDT")]
    btc = btc.sort_values("settlement_time_ms_utc").head(SETTLEMENTS).reset_index(drop=True)
    settled_ms = btc["settlement_time_ms_utc"].to_numpy(dtype=np.int64)
    hour_ms = settled_ms // H * H
    assert (np.diff(hour_ms) == 8 * H).all()
    # BTC: 8h klines whose close (at each settlement) is the real mark; spot a constant basis below
    opens = hour_ms - 8 * H
    perp_close = btc["mark_price"].to_numpy(dtype=float).round(6)  # as the file writes them (_kline)
    spot_close = (perp_close * (1 - SPOT_DISCOUNT)).round(6)
    futures = tmp / "futures" / "um" / "monthly"
    files = {  # archive path -> (rows, the unified symbol, as `fundarb import --symbol` takes it)
        futures / "klines/BTCUSDT/8h/BTCUSDT-8h-2025-08.csv": (
            _closes_to_klines(opens, perp_close, 8 * H), "BTC/USDT:USDT"),
        tmp / "spot/monthly/klines/BTCUSDT/8h/BTCUSDT-8h-2025-08.csv": (
            _closes_to_klines(opens, spot_close, 8 * H), "BTC/USDT"),
        futures / "fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-08.csv": (
            [[int(t), 8, f"{r:.8f}"] for t, r in zip(settled_ms, btc["funding_rate"], strict=True)], "BTC/USDT:USDT"),
    }  # fmt: skip
    # ETH: 1h klines for two days of the same window (a random walk), spot and perp
    rng = np.random.default_rng(11)
    eth_opens = np.arange(opens[0], opens[0] + 48 * H, H)
    eth_perp = (4000.0 * np.exp(np.cumsum(rng.normal(0, 2e-3, len(eth_opens))))).round(6)
    eth_spot = (eth_perp * (1 + rng.normal(0, 4e-4, len(eth_opens)))).round(6)
    files[futures / "klines/ETHUSDT/1h/ETHUSDT-1h-2025-08.csv"] = (
        _closes_to_klines(eth_opens, eth_perp, H),
        "ETH/USDT:USDT",
    )
    files[tmp / "spot/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2025-08.csv"] = (
        _closes_to_klines(eth_opens, eth_spot, H),
        "ETH/USDT",
    )
    data = tmp / "data"
    for path, (rows, symbol) in files.items():
        write_csv(path, rows, None, [], False)
        assert (
            cli.main(["import", str(path), "--exchange", "binance", "--symbol", symbol, "--data-dir", str(data)]) == 0
        )
    first = pd.Timestamp(int(opens[0]), unit="ms")
    last = pd.Timestamp(int(hour_ms[-1]), unit="ms")
    hourly = [
        *RAW_ASSETS,
        instruments,
        ohlcv_1m,
        ohlcv_1h,
        funding_intervals,
        funding_predictions,
        funding_rates,
        basis,
    ]
    run(hourly, data, first=first.strftime("%Y-%m-%d-%H:%M"), last=last.strftime("%Y-%m-%d-%H:%M"))
    run([ohlcv_8h, ohlcv_1d], data, first=first.strftime("%Y-%m-%d"), last=last.strftime("%Y-%m-%d"))
    return {
        "data": data,
        "btc": btc,
        "hour_ms": hour_ms,
        "perp_close": perp_close,
        "spot_close": spot_close,
        "eth": (eth_opens, eth_perp, eth_spot),
    }


def test_8h_klines_feed_the_8h_and_daily_bar_tables_not_the_minutes(history) -> None:
    data, opens = history["data"], history["hour_ms"] - 8 * H
    minutes = query(data, "SELECT count(*) AS n FROM ohlcv_1m WHERE symbol LIKE 'BTC%'")["n"].iloc[0]
    assert minutes == 0  # not forced into 1m bars
    bars = query(
        data,
        "SELECT symbol, epoch_ms(ts) AS t, open, close, volume, source, minutes FROM ohlcv_8h "
        "WHERE symbol LIKE 'BTC%' ORDER BY symbol, ts",
    )
    perp = bars[bars["symbol"] == "BTC/USDT:USDT"]
    spot = bars[bars["symbol"] == "BTC/USDT"]
    np.testing.assert_array_equal(perp["t"], opens)
    np.testing.assert_allclose(perp["close"], history["perp_close"], rtol=1e-12)
    np.testing.assert_allclose(spot["close"], history["spot_close"], rtol=1e-12)
    assert set(bars["source"]) == {"venue"} and set(bars["minutes"]) == {480}
    days = query(
        data,
        "SELECT epoch_ms(ts) AS t, open, close, volume, source FROM ohlcv_1d "
        "WHERE symbol = 'BTC/USDT:USDT' ORDER BY ts",
    )
    # an independent daily resample of the 8h file: first open, last close, summed volume per UTC day
    frame = pd.DataFrame({"t": opens, "close": history["perp_close"]})
    frame["day"] = frame["t"] // (24 * H) * (24 * H)
    expected = frame.groupby("day").agg(close=("close", "last"), bars=("close", "size")).reset_index()
    np.testing.assert_array_equal(days["t"], expected["day"])
    np.testing.assert_allclose(days["close"], expected["close"], rtol=1e-12)
    np.testing.assert_allclose(days["volume"], 10.0 * expected["bars"], rtol=1e-12)
    assert set(days["source"]) == {"ohlcv_8h"}


def test_1h_klines_feed_ohlcv_1h_and_basis_from_bar_closes(history) -> None:
    data = history["data"]
    eth_opens, eth_perp, eth_spot = history["eth"]
    hours = query(
        data,
        "SELECT epoch_ms(ts) AS t, close, source FROM ohlcv_1h WHERE symbol = 'ETH/USDT:USDT' ORDER BY ts",
    )
    np.testing.assert_array_equal(hours["t"], eth_opens)
    np.testing.assert_allclose(hours["close"], eth_perp, rtol=1e-12)
    assert set(hours["source"]) == {"venue"}
    eights = query(data, "SELECT close, source FROM ohlcv_8h WHERE symbol = 'ETH/USDT:USDT' ORDER BY ts")
    np.testing.assert_allclose(eights["close"], eth_perp[7::8], rtol=1e-12)  # resampled from the venue's 1h bars
    assert set(eights["source"]) == {"ohlcv_1h"}
    rows = query(
        data,
        "SELECT epoch_ms(ts) AS t, spot_mid, perp_mid, basis_bps, perp_bid, source FROM basis "
        "WHERE symbol = 'ETH/USDT:USDT' AND timeframe = '1h' ORDER BY ts",
    )
    np.testing.assert_array_equal(rows["t"], eth_opens)
    np.testing.assert_allclose(rows["basis_bps"], (eth_perp / eth_spot - 1) * 1e4, rtol=1e-9)
    assert set(rows["source"]) == {"bars"} and rows["perp_bid"].isna().all()


def test_8h_klines_alone_give_an_8h_basis_from_bar_closes(history) -> None:
    # BTC has 8h klines only (as Binance's spot and COIN-M archives): its basis is the 8h bars' closes
    data, opens = history["data"], history["hour_ms"] - 8 * H
    rows = query(
        data,
        "SELECT timeframe, epoch_ms(ts) AS t, spot_symbol, spot_mid, perp_mid, basis_bps, basis_apr, interval_h, "
        "perp_bid, source FROM basis WHERE symbol = 'BTC/USDT:USDT' ORDER BY timeframe, ts",
    )
    assert set(rows["timeframe"]) == {"8h"}  # no finer bars, no quotes: nothing at 1m or 1h
    np.testing.assert_array_equal(rows["t"], opens)
    assert set(rows["spot_symbol"]) == {"BTC/USDT"} and set(rows["source"]) == {"bars"}
    perp, spot = history["perp_close"], history["spot_close"]
    np.testing.assert_allclose(rows["perp_mid"], perp, rtol=1e-12)
    np.testing.assert_allclose(rows["basis_bps"], (perp / spot - 1) * 1e4, rtol=1e-9)
    np.testing.assert_allclose(rows["basis_apr"], (perp / spot - 1) * 8760 / 8, rtol=1e-9)  # 8h interval in force
    assert rows["perp_bid"].isna().all()


def _independent_funding(btc: pd.DataFrame, marks: np.ndarray) -> tuple[float, int]:
    """The textbook rule walked settlement by settlement: a short perp of UNITS held over a settlement
    receives rate x UNITS x mark; after each settlement, enter when its rate's APR reaches ENTER_APR, exit
    when the rate is no longer positive."""
    held, total, paid = False, 0.0, 0
    for rate, mark in zip(btc["funding_rate"], marks, strict=True):
        if held:
            total += rate * UNITS * mark
            paid += 1
        apr = rate * 3 * 365
        held = (apr >= ENTER_APR) if not held else rate > 0
    return total, paid


def test_textbook_carry_rule_on_imported_history_pays_the_independent_funding(history) -> None:
    data, btc = history["data"], history["btc"]
    expected, paid = _independent_funding(btc, history["perp_close"])
    assert 10 < paid < SETTLEMENTS - 5  # waits for its threshold, exits on a negative settlement (2025-08-31)
    config = {
        "strategy": "cash_carry",
        "underlyings": ["BTC"],
        "units": UNITS,
        "fee_bps": 0.0,
        "slippage_bps": 0.0,
        "enter_apr": ENTER_APR,
        "exit_apr": 0.0,
        "drawdown_stop": 0.0,
        "leverage": 1.0,
    }
    run([backtest], data, partition="cash_carry", run_config={"ops": {"backtest": {"config": config}}})
    runs = query(data, "SELECT funding_pnl, fees, slippage FROM backtest_runs")
    assert runs["funding_pnl"].iloc[0] == pytest.approx(expected, rel=1e-9)
    assert runs["fees"].iloc[0] == 0 and runs["slippage"].iloc[0] == 0
