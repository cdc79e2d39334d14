"""Helpers for warehouse tests: land real or generated records, run real materializations on a tmp DuckDB."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from dagster import DagsterInstance, materialize
from dagster._utils.warnings import BetaWarning, PreviewWarning
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core import landing, schema
from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
NAMES = {0: ("binance", "XRP/ETH"), 1: ("bybit", "BTC/USDT:USDT"), 2: ("binance", "BTC/USDT")}


def resources(data_dir: Path) -> dict[str, Any]:
    return {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(data_dir)),
        "source": SourceConfigResource(),
    }


def run(
    assets: list[Any],
    data_dir: Path,
    partition: str | None = None,
    first: str | None = None,
    last: str | None = None,
    selection: list[Any] | None = None,
    run_config: dict[str, Any] | None = None,
    instance: DagsterInstance | None = None,
) -> Any:
    """One real materialization: a single partition, or a ranged single run from `first` to `last`."""
    tags = {RANGE_START: first, RANGE_END: last} if first else None
    result = materialize(
        assets,
        resources=resources(data_dir),
        partition_key=partition,
        tags=tags,
        selection=selection,
        run_config=run_config,
        instance=instance,
    )
    assert result.success
    return result


def query(data_dir: Path, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql, params or {}).df()


def land_trades(
    data_dir: Path, frame: pd.DataFrame, instrument_id: int = 0, writer: str = "test", seq: int = 0
) -> None:
    """Land trades (ts_ms, trade_id, price, amount[, side]) of one instrument through the real writer."""
    records = schema.empty("trades", len(frame))
    records["ts_ms"] = frame["ts_ms"].to_numpy()
    records["recv_ts_ms"] = frame["ts_ms"].to_numpy() + 5
    records["instrument_id"] = instrument_id
    records["trade_id"] = frame["trade_id"].to_numpy()
    records["price"] = frame["price"].to_numpy()
    records["amount"] = frame["amount"].to_numpy()
    records["side"] = frame["side"].to_numpy() if "side" in frame else 0
    landing.write_stream(data_dir, "trades", schema.to_arrow("trades", records, NAMES), writer, seq)


def land_candles(
    data_dir: Path, frame: pd.DataFrame, instrument_id: int = 0, timeframe_s: int = 60, seq: int = 0
) -> None:
    """Land venue candles (ts_ms, open, high, low, close, volume)."""
    records = schema.empty("ohlcv", len(frame))
    for column in ("ts_ms", "open", "high", "low", "close", "volume"):
        records[column] = frame[column].to_numpy()
    records["recv_ts_ms"] = records["ts_ms"] + timeframe_s * 1000
    records["instrument_id"] = instrument_id
    records["timeframe_s"] = timeframe_s
    landing.write_stream(data_dir, "ohlcv", schema.to_arrow("ohlcv", records, NAMES), "candles", seq)


def xrp_trades(fixtures_dir: Path) -> pd.DataFrame:
    raw = pd.read_csv(fixtures_dir / "binance_xrp" / "XRP_ETH-trades.csv")
    return pd.DataFrame(
        {
            "ts_ms": raw["time_ms_utc"].astype(np.int64),
            "trade_id": raw["trade_id"].astype(np.int64),
            "price": raw["price"].astype(float),
            "amount": raw["amount_base"].astype(float),
            "side": np.where(raw["side_taker"] == "buy", 1, -1),
        }
    )


def random_walk_candles(start_ms: int, minutes: int, seed: int = 3, skip_every: int = 0) -> pd.DataFrame:
    """Synthetic 1m venue candles (a log random walk), optionally dropping every `skip_every`-th minute."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, minutes)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, minutes)) * close
    frame = pd.DataFrame(
        {
            "ts_ms": start_ms + np.arange(minutes, dtype=np.int64) * 60_000,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(1, 10, minutes),
        }
    )
    if skip_every:
        frame = frame[np.arange(minutes) % skip_every != skip_every - 1].reset_index(drop=True)
    return frame
