"""Ticks -> 1m OHLCV and 1m -> 5m/1h bars: DuckDB (the warehouse's SQL) against pandas, time and peak memory.

Every method runs in its own subprocess, end to end from the same zstd Parquet file, and reports its wall
time and its peak resident memory (the process's VmHWM: getrusage's ru_maxrss would inherit the parent's
peak through vfork + exec), so one method's garbage never counts against another. pandas is
single-threaded; DuckDB uses its default threads (all cores).

Ticks -> 1m: `duckdb_warehouse` is the warehouse's aggregation (sql/market/ohlcv_1m.sql, trade_bars: open/close
tie-broken by trade_id), `duckdb` the same with ts_ms alone; pandas side by side: `resample('1min').ohlc()`
over a DatetimeIndex (the textbook way) and the fastest groupby (integer buckets, built-in first/last).
1m -> 5m + 1h: the warehouse's SQL files on a DuckDB file, against pandas per series
(`groupby('instrument_id').resample(rule).agg({...})` over a DatetimeIndex, what a user writes) and the fastest
pandas groupby (integer buckets); the pandas frames are loaded and indexed before the clock starts.

    python -m benchmarks.bench_resample            # 10 M and 50 M ticks, 1 M 1m bars
    python -m benchmarks.bench_resample --quick    # 1 M and 2 M ticks, 100 k bars (a smoke run)
    python -m benchmarks.bench_resample --ticks 10000000 --bars 1000000   # choose the sizes

Targets: the warehouse SQL at least as fast as the best pandas at 10 M ticks; at 50 M, DuckDB's peak memory
under a quarter of pandas'; 1m -> 5m/1h at least 50x faster than pandas resample.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Goal, interleaved, load, ratios, spread

REPO = Path(__file__).resolve().parents[1]
TICK_METHODS = ("duckdb_warehouse", "duckdb", "pandas_groupby", "pandas_resample")
BAR_METHODS = ("duckdb_bars", "pandas_bars_resample", "pandas_bars_groupby")
BAR_RULES = {"5min": 300_000, "1h": 3_600_000}
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def write_ticks(path: Path, n: int, seed: int = 7) -> None:
    """n trades of one instrument, ~50 ms apart on average, a log random-walk price, in capture order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    chunk = 5_000_000
    writer = None
    ts0, price0, written = 1_762_000_000_000, 100.0, 0
    while written < n:
        m = min(chunk, n - written)
        ts = ts0 + np.cumsum(rng.integers(0, 100, m, dtype=np.int64))
        price = price0 * np.exp(np.cumsum(rng.normal(0, 1e-4, m)))
        table = pa.table(
            {
                "ts_ms": ts,
                "trade_id": np.arange(written, written + m, dtype=np.int64),
                "price": price,
                "amount": rng.exponential(1.0, m),
                "exchange": pa.array(["binance"] * m).dictionary_encode(),
                "symbol": pa.array(["BTC/USDT"] * m).dictionary_encode(),
                "instrument_id": np.zeros(m, dtype=np.int32),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
        ts0, price0, written = int(ts[-1]), float(price[-1]), written + m
    writer.close()


def write_bars(path: Path, n: int, series: int = 20, seed: int = 11) -> None:
    """n one-minute bars over `series` instruments (each a contiguous run of minutes)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    per = n // series
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, per * series)))
    spread = np.abs(rng.normal(0, 5e-4, per * series)) * close
    table = pa.table(
        {
            "ts_ms": np.tile(
                1_700_000_000_000 // 3_600_000 * 3_600_000 + np.arange(per, dtype=np.int64) * 60_000, series
            ),
            "instrument_id": np.repeat(np.arange(series, dtype=np.int32), per),
            "exchange": np.repeat(np.array([f"ex{i % 4}" for i in range(series)]), per),
            "symbol": np.repeat(np.array([f"S{i}/USDT" for i in range(series)]), per),
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.exponential(5.0, per * series),
            "is_filled": rng.random(per * series) < 0.02,
        }
    )
    pq.write_table(table, path, compression="zstd")


# -- workers (run in a subprocess each) ------------------------------------------------------------------
def _rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM is per address space, so it starts afresh at exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method: str, path: str) -> dict:
    """One method end to end. Every worker imports the same modules, and the `baseline` worker does only
    that, so peak RSS minus the baseline's is what the method itself needed."""
    import duckdb
    import pandas as pd
    import pyarrow.parquet as pq

    from fundarb_dagster.core import resample

    if method == "baseline":
        return {"method": method, "rows": 0, "total_s": 0.0, "compute_s": 0.0, "peak_mb": _rss_mb()}
    t0 = time.perf_counter()
    if method in ("duckdb", "duckdb_warehouse"):
        tie = "(ts_ms::HUGEINT << 64) + trade_id" if method == "duckdb_warehouse" else "ts_ms"
        # the warehouse's aggregation (sql/market/ohlcv_1m.sql, trade_bars), streamed from Parquet
        sql = (
            "SELECT instrument_id, any_value(exchange) AS exchange, any_value(symbol) AS symbol, "
            "(ts_ms // 60000) * 60000 AS bucket_ms, "
            f"arg_min(price, {tie}) AS open, max(price) AS high, min(price) AS low, arg_max(price, {tie}) AS close, "
            "sum(amount) AS volume, count(*) AS trade_count "
            "FROM read_parquet($path) GROUP BY instrument_id, bucket_ms"
        )
        with duckdb.connect() as conn:
            rows = len(conn.execute(sql, {"path": path}).fetchnumpy()["bucket_ms"])
        compute = time.perf_counter() - t0
    elif method in ("pandas_groupby", "pandas_resample"):
        table = pq.read_table(path, columns=["ts_ms", "price", "amount"])
        ts, price, amount = (table.column(c).to_numpy() for c in ("ts_ms", "price", "amount"))
        del table
        t1 = time.perf_counter()
        if method == "pandas_groupby":
            rows = len(resample.pandas_groupby_ohlc(ts, price, amount))
        else:
            rows = len(resample.pandas_resample_ohlc(ts, price, amount, "1min"))
        compute = time.perf_counter() - t1
    elif method == "duckdb_bars":
        database = Path(path).with_suffix(".duckdb")
        database.unlink(missing_ok=True)
        with duckdb.connect(str(database)) as conn:  # a file, as the warehouse is
            conn.execute(
                "CREATE TABLE ohlcv_1m AS SELECT make_timestamp(ts_ms * 1000) AS ts, * EXCLUDE (ts_ms), "
                "0::BIGINT AS trade_count FROM read_parquet($path) ORDER BY ts",
                {"path": path},
            )
            conn.execute("CHECKPOINT")
            first = conn.execute("SELECT min(ts) FROM ohlcv_1m").fetchone()[0]
            t1 = time.perf_counter()
            rows = _duckdb_bars(conn, pd.Timestamp("2000-01-01"), pd.Timestamp("2100-01-01"))
            compute = time.perf_counter() - t1
            hour_s = _median_hour(lambda s, e: _duckdb_bars(conn, s, e), pd.Timestamp(first))
        database.unlink()
    elif method in ("pandas_bars_resample", "pandas_bars_groupby"):
        frame = pq.read_table(path, columns=["ts_ms", "instrument_id", *AGG]).to_pandas()
        frame.index = pd.to_datetime(frame["ts_ms"], unit="ms")
        frame = frame.sort_index(kind="stable")  # the pandas slices of one hour need a sorted index
        t1 = time.perf_counter()
        rows = _pandas_bars(frame, method)
        compute = time.perf_counter() - t1
        hour_s = _median_hour(lambda s, e: _pandas_bars(frame[s : e - pd.Timedelta(1, "ms")], method), frame.index[0])
    else:
        raise ValueError(f"method: {method!r} unknown")
    total = time.perf_counter() - t0
    result = {"method": method, "rows": rows, "total_s": total, "compute_s": compute, "peak_mb": _rss_mb()}
    if method in BAR_METHODS:
        result["hour_s"] = hour_s
    return result


def _duckdb_bars(conn: Any, start: Any, end: Any) -> int:
    """The warehouse's 5m and 1h SQL for [start, end), each into a table as replace_window does first."""
    rows = 0
    sql = (REPO / "sql" / "market" / "bars_from_1m.sql").read_text()
    for name, bucket_us in (("ohlcv_5m", 300_000_000), ("ohlcv_1h", 3_600_000_000)):
        params = {"start": start, "end": end, "bucket_us": bucket_us}
        conn.execute(f"CREATE OR REPLACE TEMP TABLE {name}_out AS {sql}", params)
        rows += conn.execute(f"SELECT count(*) FROM {name}_out").fetchone()[0]
    return rows


def _pandas_bars(frame: Any, method: str) -> int:
    rows = 0
    for rule, width in BAR_RULES.items():
        if method == "pandas_bars_resample":  # per series on a DatetimeIndex: what a user writes
            out = frame.groupby("instrument_id").resample(rule).agg(AGG)
        else:  # the fastest pandas: integer buckets (rows arrive in time order per series)
            keys = [frame["instrument_id"].to_numpy(), frame["ts_ms"].to_numpy() // width]
            out = frame.groupby(keys, sort=False).agg(AGG)
        rows += len(out)
    return rows


def _median_hour(run: Callable[[Any, Any], int], first: Any, hours: int = 15) -> float:
    """Median time of one hourly partition's 5m + 1h (the incremental path), over successive hours."""
    import pandas as pd

    start = pd.Timestamp(first).floor("h") + pd.Timedelta(1, "h")
    times = []
    for h in range(hours):
        t = time.perf_counter()
        run(start + pd.Timedelta(h, "h"), start + pd.Timedelta(h + 1, "h"))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_worker(method: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_resample", "--worker", method, "--file", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_methods(methods: tuple[str, ...], path: Path) -> dict[str, dict]:
    """Each method in its own subprocess; peak_mb is over the import-only baseline, peak_abs_mb absolute."""
    baseline = run_worker("baseline", path)["peak_mb"]
    results = {}
    for method in methods:
        r = run_worker(method, path)
        r["peak_abs_mb"] = r["peak_mb"]
        r["peak_mb"] = max(r["peak_mb"] - baseline, 1.0)
        results[method] = r
    return results


def bench_ticks(n: int, folder: Path) -> dict[str, dict]:
    path = folder / f"ticks_{n}.parquet"
    t0 = time.perf_counter()
    write_ticks(path, n)
    print(
        f"\n{n / 1e6:g} M ticks -> 1m OHLCV  (data written in {time.perf_counter() - t0:.1f} s, "
        f"{path.stat().st_size / 1e6:.0f} MB Parquet)"
    )
    results = run_methods(TICK_METHODS, path)
    best = min(results[m]["total_s"] for m in ("pandas_groupby", "pandas_resample"))
    print(
        f"  {'method':18s} {'bars':>9s} {'end-to-end s':>13s} {'compute s':>10s} {'pandas best/it':>14s} "
        f"{'peak MB':>8s} {'(over import baseline)':>23s}"
    )
    for method, r in results.items():
        print(
            f"  {method:18s} {r['rows']:9d} {r['total_s']:13.2f} {r['compute_s']:10.2f} {best / r['total_s']:14.2f} "
            f"{r['peak_abs_mb']:8.0f} {r['peak_mb']:23.0f}"
        )
    path.unlink()
    return results


def bench_bars(n: int, folder: Path) -> dict[str, dict]:
    path = folder / f"bars_{n}.parquet"
    write_bars(path, n)
    print(f"\n{n / 1e6:g} M 1m bars (20 series) -> 5m + 1h  (compute: from the loaded table/frame to both results)")
    results = run_methods(BAR_METHODS, path)
    duck = results["duckdb_bars"]["compute_s"]
    hour = results["duckdb_bars"]["hour_s"]
    print(
        f"  {'method':22s} {'bars':>9s} {'all at once s':>14s} {'DuckDB x faster':>16s} "
        f"{'one hour ms':>12s} {'DuckDB x faster':>16s} {'peak MB':>8s}"
    )
    for method, r in results.items():
        print(
            f"  {method:22s} {r['rows']:9d} {r['compute_s']:14.3f} {r['compute_s'] / duck:16.1f} "
            f"{r['hour_s'] * 1000:12.1f} {r['hour_s'] / hour:16.1f} {r['peak_abs_mb']:8.0f}"
        )
    path.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--ticks", type=int, nargs="*", help="tick counts (default 10 M and 50 M)")
    parser.add_argument("--bars", type=int, help="1m bars to resample (default 1 M)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.file)))
        return
    ticks, bars = ([1_000_000, 2_000_000], 100_000) if args.quick else ([10_000_000, 50_000_000], 1_000_000)
    ticks = args.ticks if args.ticks is not None else ticks
    bars = args.bars if args.bars is not None else bars
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench_resample_") as tmp:
        folder = Path(tmp)
        tick_results = {n: bench_ticks(n, folder) for n in ticks}
        bar_results = bench_bars(bars, folder) if bars else None
    print("\nsummary")
    for n, at in tick_results.items():
        best_pandas = min(at["pandas_groupby"]["total_s"], at["pandas_resample"]["total_s"])
        speed = best_pandas / at["duckdb_warehouse"]["total_s"]
        memory = at["duckdb_warehouse"]["peak_mb"] / min(
            at[m]["peak_mb"] for m in ("pandas_groupby", "pandas_resample")
        )
        # the speed target is set at the smallest size, the memory target at the largest
        speed_verdict = f" (target >= 1): {'PASS' if speed >= 1 else 'FAIL'}" if n == min(tick_results) else ""
        memory_verdict = f" (target < 0.25): {'PASS' if memory < 0.25 else 'FAIL'}" if n == max(tick_results) else ""
        print(
            f"  {n / 1e6:g} M ticks: warehouse SQL end-to-end {speed:.2f}x the best pandas{speed_verdict}; "
            f"peak memory {memory:.2f} of the leanest pandas'{memory_verdict}"
        )
    if bar_results:
        duck = bar_results["duckdb_bars"]["compute_s"]
        hour = bar_results["duckdb_bars"]["hour_s"]
        resample_x = bar_results["pandas_bars_resample"]["compute_s"] / duck
        groupby_x = bar_results["pandas_bars_groupby"]["compute_s"] / duck
        hour_x = bar_results["pandas_bars_resample"]["hour_s"] / hour
        print(
            f"  1m -> 5m/1h: DuckDB is {resample_x:.1f}x pandas resample (target >= 50): "
            f"{'PASS' if resample_x >= 50 else 'FAIL'}; {groupby_x:.1f}x the fastest pandas groupby; "
            f"one hourly partition: {hour_x:.1f}x pandas resample"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()


# -- the harness's goal: 1m -> 5m + 1h, the assets' work against pandas resample, interleaved -------------
def bar_goals(quick: bool) -> tuple[list[Goal], str]:
    """The ohlcv_5m and ohlcv_1h assets' work on one window (the warehouse SQL into the tables through
    replace_window, as the assets run it) against pandas resample per series on a frame already loaded and
    indexed (what a user writes; its read and write are not counted), interleaved in one process."""
    import duckdb
    import pandas as pd
    import pyarrow.parquet as pq

    from fundarb_dagster.core.sql import load_sql, replace_window

    n, repeats = (200_000, 5) if quick else (1_000_000, 5)
    with tempfile.TemporaryDirectory(prefix="bench_bars_") as tmp:
        path = Path(tmp) / "bars.parquet"
        write_bars(path, n)
        frame = pq.read_table(path, columns=["ts_ms", "instrument_id", *AGG]).to_pandas()
        frame.index = pd.to_datetime(frame["ts_ms"], unit="ms")
        frame = frame.sort_index(kind="stable")
        conn = duckdb.connect(str(Path(tmp) / "warehouse.duckdb"))
        conn.execute(
            "CREATE TABLE ohlcv_1m AS SELECT make_timestamp(ts_ms * 1000) AS ts, * EXCLUDE (ts_ms), "
            "1::BIGINT AS trade_count FROM read_parquet($path) ORDER BY ts",
            {"path": str(path)},
        )
        conn.execute("CHECKPOINT")
        first, last = conn.execute("SELECT min(ts), max(ts) FROM ohlcv_1m").fetchone()
        params = {"start": pd.Timestamp(first).floor("h"), "end": pd.Timestamp(last).ceil("h") + pd.Timedelta("1h")}
        sql = load_sql("market", "bars_from_1m")
        counts: dict[str, int] = {}

        def warehouse() -> None:
            counts["warehouse"] = sum(
                replace_window(conn, name, sql, {**params, "bucket_us": bucket_us})
                for name, bucket_us in (("ohlcv_5m", 300_000_000), ("ohlcv_1h", 3_600_000_000))
            )

        def pandas_resample() -> None:
            counts["pandas"] = _pandas_bars(frame, "pandas_bars_resample")

        def write_floor() -> None:  # DuckDB's own cost to store the output rows, the query's work aside
            for name in ("ohlcv_5m", "ohlcv_1h"):  # one transaction each, as replace_window commits
                conn.execute("BEGIN TRANSACTION")
                conn.execute(f"DELETE FROM {name}_floor")
                conn.execute(f"INSERT INTO {name}_floor SELECT * FROM {name}")
                conn.execute("COMMIT")

        warehouse()  # the tables exist: every timed run replaces the window (delete + insert)
        for name in ("ohlcv_5m", "ohlcv_1h"):
            conn.execute(f"CREATE TABLE {name}_floor AS SELECT * FROM {name}")
        times = interleaved(
            {"pandas_resample": pandas_resample, "warehouse": warehouse, "write_floor": write_floor}, repeats
        )
        conn.close()
    x = ratios(times["pandas_resample"], times["warehouse"])
    size = f"{n:,} 1m bars, 20 series -> {counts['warehouse']:,} 5m + 1h bars"
    report = (
        f"1m -> 5m + 1h: {size}; interleaved in one process; {load()}\n"
        f"  pandas groupby().resample().agg ms {spread(times['pandas_resample'], 1e3)} ({counts['pandas']:,} bars)\n"
        f"  warehouse (bars_from_1m.sql via replace_window, both tables) ms {spread(times['warehouse'], 1e3)}\n"
        f"  DuckDB storing the same output rows alone (delete + insert from a table) ms "
        f"{spread(times['write_floor'], 1e3)}: the best any SQL could reach is pandas / that = "
        f"{spread(ratios(times['pandas_resample'], times['write_floor']))}x\n"
        f"  pandas / warehouse: {spread(x)}x"
    )
    median_x = statistics.median(x)
    return [Goal("bars_from_bars", f"{median_x:.1f}x", ">= 50x pandas resample", median_x >= 50, size)], report
