"""The sim source's REST history, landed by core.history, through instruments -> raw -> bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fundarb_dagster.core import resample
from fundarb_dagster.core.config import ExchangeConfig, default_config
from fundarb_dagster.core.history import pull_history
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
from fundarb_dagster.defs.raw.assets import instruments, raw_ohlcv, raw_trades
from tests.defs.raw.landing_fixtures import query, run


def test_sim_history_flows_into_instruments_raw_and_bars(tmp_path):
    config = default_config(
        data_dir=str(tmp_path),
        exchanges=(ExchangeConfig(id="bybit", symbols=("ETH/USDT", "ETH/USDT:USDT")),),
    )
    until = config.sim.start_ms
    since = until - 2 * HOUR_MS
    counts = pull_history(config, since, until, streams=("ohlcv", "trades"), progress=None)
    assert counts["trades"] > 0
    run([instruments], tmp_path)
    first = pd.Timestamp(since, unit="ms").strftime("%Y-%m-%d-%H:00")
    last = pd.Timestamp(until - HOUR_MS, unit="ms").strftime("%Y-%m-%d-%H:00")
    run([raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h], tmp_path, first=first, last=last)

    registry = InstrumentRegistry.load(registry_path(tmp_path))
    table = query(tmp_path, "SELECT instrument_id, exchange, symbol FROM instruments ORDER BY instrument_id")
    assert [tuple(r) for r in table.itertuples(index=False)] == [(i.id, i.exchange, i.symbol) for i in registry]

    landed = pq.read_table(tmp_path / "landing" / "trades", partitioning="hive").to_pandas()
    assert (
        query(tmp_path, "SELECT count(*) AS n FROM raw_trades")["n"][0]
        == landed.drop_duplicates(["exchange", "symbol", "trade_id"]).shape[0]
    )
    for symbol, trades in landed.groupby("symbol"):
        expected = resample.trades_to_ohlcv(trades.drop_duplicates("trade_id"))
        got = query(
            tmp_path,
            "SELECT epoch_ms(ts) AS bucket_ms, open, high, low, close, volume FROM ohlcv_1m "
            "WHERE symbol = $symbol AND source = 'trades' ORDER BY ts",
            {"symbol": symbol},
        )
        np.testing.assert_array_equal(got["bucket_ms"], expected["bucket_ms"])
        for column in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(got[column], expected[column], err_msg=f"{symbol} {column}")
        np.testing.assert_allclose(got["volume"], expected["volume"], rtol=1e-9)
    hours = query(tmp_path, "SELECT count(*) AS n FROM ohlcv_1h")["n"][0]
    assert hours == 2 * 2  # two instruments x two hours
