"""Cost of materializing one new hour when the warehouse holds 1 day vs 30 days of history.

Builds two warehouses from landed trades (9 instruments), each in one ranged run per partitions definition
(which also shows how long days of data take to load), then lands one more hour and times the hourly
assets for that hour only: raw tables, ohlcv_1m/5m/1h, indicators. A partition's cost should not grow with
history (target: 30-day time within 1.3x of the 1-day time): windows are bound parameters over `ts`, so
DuckDB's zone maps skip old row groups, and the look-backs (previous close, indicator warm-up) are bounded.

    python -m benchmarks.bench_incremental           # 1 vs 30 days, a trade every 2 s per instrument
    python -m benchmarks.bench_incremental --quick   # 1 vs 3 days, a trade every 20 s
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fundarb_dagster.core.units import HOUR_MS

warnings.filterwarnings("ignore")

START_MS = 1_761_955_200_000  # 2025-11-01 00:00 UTC
NAMES = {
    i: (("binance", "bybit", "hyperliquid")[i % 3], ("BTC/USDT", "ETH/USDT", "SOL/USDT")[i // 3]) for i in range(9)
}


def land_hours(data_dir: Path, first_hour: int, hours: int, step_ms: int, seq: int) -> int:
    """Land `hours` hours of trades for 9 instruments, starting at hour index `first_hour`; returns rows."""
    from fundarb_dagster.core import landing, schema

    rng = np.random.default_rng(seq)
    start = START_MS + first_hour * HOUR_MS
    per = hours * HOUR_MS // step_ms
    records = schema.empty("trades", per * len(NAMES))
    ts = start + np.arange(per, dtype=np.int64) * step_ms
    for i in range(len(NAMES)):
        block = slice(i * per, (i + 1) * per)
        records["ts_ms"][block] = ts + rng.integers(0, step_ms, per)
        records["recv_ts_ms"][block] = records["ts_ms"][block] + 3
        records["instrument_id"][block] = i
        records["trade_id"][block] = seq * 10**12 + i * 10**10 + np.arange(per)
        records["price"][block] = (100 + 10 * i) * np.exp(np.cumsum(rng.normal(0, 5e-4, per)))
        records["amount"][block] = rng.exponential(1.0, per)
    landing.write_stream(data_dir, "trades", schema.to_arrow("trades", records, NAMES), "bench", seq)
    return len(records)


def key(hour_index: int) -> str:
    t = datetime.fromtimestamp((START_MS + hour_index * HOUR_MS) / 1000, tz=UTC)
    return f"{t:%Y-%m-%d-%H}:00"


def materialize_hours(data_dir: Path, first: int, last: int) -> float:
    from dagster import DagsterInstance, materialize
    from dagster_duckdb import DuckDBResource

    from fundarb_dagster.defs.market.assets import indicators, ohlcv_1h, ohlcv_1m, ohlcv_5m
    from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
    from fundarb_dagster.defs.resources import DataDirResource

    resources = {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(data_dir)),
    }
    tags = (
        {"dagster/asset_partition_range_start": key(first), "dagster/asset_partition_range_end": key(last)}
        if last > first
        else None
    )
    t0 = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h, indicators],
            resources=resources,
            instance=instance,
            partition_key=None if tags else key(first),
            tags=tags,
        )
    assert result.success
    return time.perf_counter() - t0


def bench(days: int, step_ms: int, repeats: int, folder: Path) -> tuple[float, list[float], int]:
    data_dir = folder / f"days_{days}"
    hours = days * 24
    rows = 0
    for day in range(days):  # one file per day, as a capture's hourly files would add up
        rows += land_hours(data_dir, day * 24, 24, step_ms, seq=day)
    load_s = materialize_hours(data_dir, 0, hours - 1)
    times = []
    for r in range(repeats):
        hour = hours + r
        land_hours(data_dir, hour, 1, step_ms, seq=10_000 + r)
        times.append(materialize_hours(data_dir, hour, hour))
    return load_s, times, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 vs 3 days, sparse trades: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    small, large, step = (1, 3, 20_000) if args.quick else (1, 30, 2_000)
    with tempfile.TemporaryDirectory(prefix="bench_incremental_") as tmp:
        results = {}
        for days in (small, large):
            load_s, times, rows = bench(days, step, args.repeats, Path(tmp))
            results[days] = statistics.median(times)
            print(
                f"{days:3d} days of history ({rows / 1e6:.2f} M trades, 9 instruments): loaded in one ranged run in "
                f"{load_s:.1f} s; one new hour: median {results[days]:.2f} s "
                f"({', '.join(f'{t:.2f}' for t in times)})"
            )
    ratio = results[large] / results[small]
    print(
        f"new hour with {large} days / with {small} day: {ratio:.2f}x (target <= 1.3): "
        f"{'PASS' if ratio <= 1.3 else 'FAIL'}"
    )


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    main()
