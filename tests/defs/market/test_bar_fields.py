"""The fields users have in their archives reach the warehouse (#14 finding 7): Binance klines' quote volume,
trade count and taker-buy volume, trades' taker side and quote amount, in the raw tables and in the bars,
checked against an independent parse of the same files (the real XRP/ETH trades of `binance_xrp/`; klines
written in Binance's archive format)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.importer import import_files
from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
from tests.core.binance_archives import write_csv
from tests.defs.raw.landing_fixtures import query, run

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MINUTE = 60_000


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, fixtures_dir) -> Path:
    tmp = tmp_path_factory.mktemp("fields")
    data = tmp / "data"
    trades = fixtures_dir / "binance_xrp" / "XRP_ETH-trades.csv"
    assert import_files([trades], data, exchange="binance", symbol="XRP/ETH", progress=None).ok
    rng = np.random.default_rng(5)
    rows = []
    for i in range(180):  # three hours of 1m klines, every field its own value
        t, c = T0 + i * MINUTE, 100 + i * 0.01
        volume = round(float(rng.uniform(1, 9)), 4)
        rows.append([t, f"{c:.2f}", f"{c + 0.5:.2f}", f"{c - 0.5:.2f}", f"{c:.2f}", volume, t + MINUTE - 1,
                     f"{volume * c:.6f}", int(rng.integers(1, 500)), f"{volume * 0.4:.4f}", "0", "0"])  # fmt: skip
    klines = write_csv(tmp / "spot" / "BTCUSDT-1m-2024-01-01.csv", rows, None, [], False)
    assert import_files([klines], data, exchange="binance", symbol="BTC/USDT", progress=None).ok
    run([raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_1h], data, first="2019-10-11-00:00", last="2019-10-13-23:00")
    run([raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_1h], data, first="2024-01-01-00:00", last="2024-01-01-02:00")
    return data, klines


def _trades_file(fixtures_dir: Path) -> pd.DataFrame:
    with open(fixtures_dir / "binance_xrp" / "XRP_ETH-trades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return pd.DataFrame(
        {
            "trade_id": [int(r["trade_id"]) for r in rows],
            "t": [int(r["time_ms_utc"]) for r in rows],
            "side": [r["side_taker"] for r in rows],
            "amount": [float(r["amount_base"]) for r in rows],
            "cost": [float(r["cost_quote"]) for r in rows],
        }
    )


def test_trades_keep_the_taker_side_and_quote_amount_into_the_1m_bars(warehouse, fixtures_dir) -> None:
    data, _ = warehouse
    expected = _trades_file(fixtures_dir)
    raw = query(data, "SELECT trade_id, side, cost FROM raw_trades WHERE symbol = 'XRP/ETH' ORDER BY trade_id")
    merged = expected.merge(raw, on="trade_id", suffixes=("", "_raw"))
    assert len(merged) == len(expected) == len(raw)
    np.testing.assert_array_equal(merged["side_raw"], np.where(merged["side"] == "buy", 1, -1))
    np.testing.assert_array_equal(merged["cost_raw"], merged["cost"])  # as the file gives it
    expected["minute"] = expected["t"] // MINUTE * MINUTE
    bought = expected["amount"].where(expected["side"] == "buy", 0.0)
    minutes = (
        expected.assign(bought=bought)
        .groupby("minute")
        .agg(quote=("cost", "sum"), taker=("bought", "sum"), n=("trade_id", "size"))
    )
    bars = query(
        data,
        "SELECT epoch_ms(ts) AS minute, quote_volume, taker_buy_volume, trade_count FROM ohlcv_1m "
        "WHERE symbol = 'XRP/ETH' AND source = 'trades' ORDER BY ts",
    ).set_index("minute")
    assert bars.index.tolist() == minutes.index.tolist()
    np.testing.assert_allclose(bars["quote_volume"], minutes["quote"], rtol=1e-12)
    np.testing.assert_allclose(bars["taker_buy_volume"], minutes["taker"], rtol=1e-12)
    np.testing.assert_array_equal(bars["trade_count"], minutes["n"])
    hours = query(
        data,
        "SELECT sum(quote_volume) AS q, sum(taker_buy_volume) AS b FROM ohlcv_1h WHERE symbol = 'XRP/ETH'",
    )
    assert hours["q"].iloc[0] == pytest.approx(expected["cost"].sum(), rel=1e-12)
    assert hours["b"].iloc[0] == pytest.approx(bought.sum(), rel=1e-12)


def test_klines_keep_quote_volume_trade_count_and_taker_buys_into_every_bar_table(warehouse) -> None:
    data, klines = warehouse
    with open(klines, newline="") as handle:  # the file read again, by position as Binance documents it
        rows = [[float(v) for v in r] for r in csv.reader(handle)]
    file = pd.DataFrame(rows).rename(columns={0: "t", 7: "quote", 8: "count", 9: "taker"})
    raw = query(
        data,
        "SELECT ts_ms AS t, quote_volume, trade_count, taker_buy_volume FROM raw_ohlcv WHERE symbol = 'BTC/USDT' "
        "ORDER BY ts_ms",
    )
    np.testing.assert_array_equal(raw["t"], file["t"])
    np.testing.assert_array_equal(raw["quote_volume"], file["quote"])
    np.testing.assert_array_equal(raw["trade_count"], file["count"])
    np.testing.assert_array_equal(raw["taker_buy_volume"], file["taker"])
    minutes = query(
        data,
        "SELECT quote_volume, trade_count, taker_buy_volume, source FROM ohlcv_1m WHERE symbol = 'BTC/USDT' "
        "ORDER BY ts",
    )
    assert set(minutes["source"]) == {"venue"}
    np.testing.assert_array_equal(minutes["trade_count"], file["count"].astype(int))
    hours = query(
        data,
        "SELECT quote_volume, trade_count, taker_buy_volume FROM ohlcv_1h WHERE symbol = 'BTC/USDT' ORDER BY ts",
    )
    by_hour = file.groupby(file["t"] // 3_600_000).agg(
        quote=("quote", "sum"), count=("count", "sum"), taker=("taker", "sum")
    )
    np.testing.assert_allclose(hours["quote_volume"], by_hour["quote"], rtol=1e-12)
    np.testing.assert_array_equal(hours["trade_count"], by_hour["count"].astype(int))
    np.testing.assert_allclose(hours["taker_buy_volume"], by_hour["taker"], rtol=1e-12)
