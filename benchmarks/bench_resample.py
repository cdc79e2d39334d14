"""Ticks -> 1m OHLCV and 1m -> 5m/1h bars: DuckDB (the warehouse's SQL) against pandas, time and peak memory.

Ticks -> 1m: every method runs in its own subprocess, end to end from the same zstd Parquet file, and
reports its wall time and its peak resident memory (the process's VmHWM: getrusage's ru_maxrss would inherit
the parent's peak through vfork + exec), so one method's garbage never counts against another; the methods
run interleaved `--repeats` times (default 3) and the medians are printed. pandas is single-threaded; DuckDB
uses its default threads (all cores). `duckdb_warehouse` is the warehouse's aggregation
(sql/market/ohlcv_1m.sql, trade_bars: open/close tie-broken by trade_id), `duckdb` the same with ts_ms alone;
pandas side by side: `resample('1min').ohlc()` over a DatetimeIndex (the textbook way) and the fastest groupby
(integer buckets, built-in first/last).

1m -> 5m + 1h: the ohlcv_5m and ohlcv_1h assets' work (`resample_bars` on a DuckDB file: read the window of
ohlcv_1m, bucket, merge venue bars, replace the window in both tables) against pandas doing the same work
(load the window from DuckDB, drop duplicate keys, `groupby('instrument_id').resample(rule).agg({...})`, drop
the empty buckets resample makes for gaps, replace the window in two tables), interleaved in one process at
least 5 times, with DuckDB's own cost of storing the output rows beside them. The results are compared
(same bar count, same volume).

    python -m benchmarks.bench_resample            # 10 M and 50 M ticks, 1 M 1m bars
    python -m benchmarks.bench_resample --quick    # 1 M and 2 M ticks, 200 k bars (a smoke run)
    python -m benchmarks.bench_resample --ticks 10000000 --bars 1000000   # choose the sizes

Targets: the warehouse SQL at least as fast as the best pandas at 10 M ticks; at 50 M, DuckDB's peak memory
under a quarter of pandas'; 1m -> 5m/1h at least 50x faster than pandas doing the same work.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Goal, interleaved, load, ratios, spread

REPO = Path(__file__).resolve().parents[1]
TICK_METHODS = ("duckdb_warehouse", "duckdb", "pandas_groupby", "pandas_resample")
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
    else:
        raise ValueError(f"method: {method!r} unknown")
    total = time.perf_counter() - t0
    return {"method": method, "rows": rows, "total_s": total, "compute_s": compute, "peak_mb": _rss_mb()}


def run_worker(method: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_resample", "--worker", method, "--file", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_methods(methods: tuple[str, ...], path: Path, repeats: int) -> dict[str, dict]:
    """Each method in its own subprocess, the methods interleaved (A, B, C, A, B, C, ...) `repeats` times;
    per method the median of each figure and the runs' totals. peak_mb is over the import-only baseline,
    peak_abs_mb absolute."""
    baseline = run_worker("baseline", path)["peak_mb"]
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for _ in range(repeats):
        for method in methods:
            runs[method].append(run_worker(method, path))
    results = {}
    for method, rs in runs.items():
        r = {key: statistics.median(x[key] for x in rs) for key in ("rows", "total_s", "compute_s", "peak_mb")}
        r["totals"] = [x["total_s"] for x in rs]
        r["peak_abs_mb"] = r["peak_mb"]
        r["peak_mb"] = max(r["peak_mb"] - baseline, 1.0)
        results[method] = r
    return results


def bench_ticks(n: int, folder: Path, repeats: int) -> dict[str, dict]:
    path = folder / f"ticks_{n}.parquet"
    t0 = time.perf_counter()
    write_ticks(path, n)
    print(
        f"\n{n / 1e6:g} M ticks -> 1m OHLCV  (data written in {time.perf_counter() - t0:.1f} s, "
        f"{path.stat().st_size / 1e6:.0f} MB Parquet)"
    )
    results = run_methods(TICK_METHODS, path, repeats)
    best = min(results[m]["total_s"] for m in ("pandas_groupby", "pandas_resample"))
    print(f"  medians of {repeats} runs, methods interleaved")
    print(
        f"  {'method':18s} {'bars':>9s} {'end-to-end s':>13s} {'compute s':>10s} {'pandas best/it':>14s} "
        f"{'peak MB':>8s} {'(over import baseline)':>23s}"
    )
    for method, r in results.items():
        print(
            f"  {method:18s} {r['rows']:9.0f} {r['total_s']:13.2f} {r['compute_s']:10.2f} {best / r['total_s']:14.2f} "
            f"{r['peak_abs_mb']:8.0f} {r['peak_mb']:23.0f}"
        )
    path.unlink()
    return results


# -- the harness's goal: 1m -> 5m + 1h, the assets' work against pandas doing the same work, interleaved -----
def bar_database(folder: Path, n: int) -> tuple[Any, dict[str, Any]]:
    """A warehouse file whose ohlcv_1m holds n one-minute bars (20 series, rows in time order as hourly
    partitions insert them, ~2 % padded minutes), an empty raw_ohlcv (no venue bars), and the window covering
    them: what the ohlcv_5m and ohlcv_1h assets read."""
    import duckdb
    import pandas as pd

    from fundarb_dagster.core.sql import load_sql
    from fundarb_dagster.defs.common.landing import ensure_raw_tables

    path = folder / "bars.parquet"
    write_bars(path, n)
    conn = duckdb.connect(str(folder / "warehouse.duckdb"))
    conn.execute(load_sql("market", "ohlcv_1m_table"))
    conn.execute(
        "INSERT INTO ohlcv_1m BY NAME SELECT make_timestamp(ts_ms * 1000) AS ts, * EXCLUDE (ts_ms), "
        "1::BIGINT AS trade_count, volume * close AS quote_volume, volume / 2 AS taker_buy_volume, "
        "'trades' AS source FROM read_parquet($path) ORDER BY ts",
        {"path": str(path)},
    )
    (folder / "data").mkdir()
    ensure_raw_tables(conn, folder / "data", "raw_ohlcv")
    conn.execute("CHECKPOINT")
    first, last = conn.execute("SELECT min(ts), max(ts) FROM ohlcv_1m").fetchall()[0]
    start, end = pd.Timestamp(first).floor("h"), pd.Timestamp(last).floor("h") + pd.Timedelta("1h")
    window = {"start": start, "end": end, "start_ms": start.value // 1_000_000, "end_ms": end.value // 1_000_000}
    return conn, window


def pandas_bar_tables(conn: Any, window: dict[str, Any]) -> int:
    """The same work the obvious way in pandas: load the window's minutes from DuckDB, drop duplicate keys,
    resample per series (`groupby().resample().agg()` on a DatetimeIndex), drop the buckets with no minute
    (the gaps resample creates), and replace the window in two DuckDB tables. Returns the bars written."""
    frame = conn.execute(
        "SELECT ts, instrument_id, exchange, symbol, open, high, low, close, volume, trade_count, quote_volume, "
        "taker_buy_volume, is_filled FROM ohlcv_1m WHERE ts >= $start AND ts < $end",
        {"start": window["start"], "end": window["end"]},
    ).df()
    frame = frame.drop_duplicates(["instrument_id", "ts"], keep="last").set_index("ts").sort_index(kind="stable")
    agg = {
        **AGG,
        "exchange": "first",
        "symbol": "first",
        "trade_count": "sum",
        "quote_volume": "sum",
        "taker_buy_volume": "sum",
        "is_filled": ["sum", "count"],
    }
    rows = 0
    for name, rule in (("pandas_5m", "5min"), ("pandas_1h", "1h")):
        bars = frame.groupby("instrument_id").resample(rule).agg(agg)
        bars.columns = [a if b in ("", "first", "max", "min", "last") or a != "is_filled" and b == "sum" else
                        ("filled_minutes" if b == "sum" else "minutes") for a, b in bars.columns]  # fmt: skip
        bars = bars[bars["minutes"] > 0].reset_index()  # gaps: buckets without a minute are not bars
        bars["is_filled"] = bars["filled_minutes"] == bars["minutes"]
        conn.register("pandas_bars", bars)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM pandas_bars LIMIT 0")
        conn.execute("BEGIN TRANSACTION")
        conn.execute(f"DELETE FROM {name} WHERE ts >= $start AND ts < $end", {"start": window["start"],
                                                                              "end": window["end"]})  # fmt: skip
        conn.execute(f"INSERT INTO {name} BY NAME SELECT * FROM pandas_bars")
        conn.execute("COMMIT")
        conn.unregister("pandas_bars")
        rows += len(bars)
    return rows


def bar_goals(quick: bool) -> tuple[list[Goal], str]:
    return measure_bars(200_000 if quick else 1_000_000, 5)


def measure_bars(n: int, repeats: int) -> tuple[list[Goal], str]:
    """The ohlcv_5m and ohlcv_1h assets' work on one window (`resample_bars`, the assets' body less Dagster:
    bars_from_1m.sql into a temporary table, merged with venue bars, replace_window into the table) against
    pandas doing the same work (load from DuckDB, dedup, resample, drop the gaps, write), interleaved in one
    process, with DuckDB's own cost of storing the output rows beside them."""
    from fundarb_dagster.defs.market.assets import resample_bars

    with tempfile.TemporaryDirectory(prefix="bench_bars_") as tmp:
        conn, window = bar_database(Path(tmp), n)
        counts: dict[str, int] = {}

        def warehouse() -> None:
            counts["warehouse"] = sum(
                resample_bars(conn, name, "ohlcv_1m", {**window, "bucket_us": seconds * 1_000_000}, seconds)[0]
                for name, seconds in (("ohlcv_5m", 300), ("ohlcv_1h", 3600))
            )

        def pandas() -> None:
            counts["pandas"] = pandas_bar_tables(conn, window)

        def write_floor() -> None:  # DuckDB's own cost to store the output rows, the query's work aside
            for name in ("ohlcv_5m", "ohlcv_1h"):  # one transaction each, as replace_window commits
                conn.execute("BEGIN TRANSACTION")
                conn.execute(f"DELETE FROM {name}_floor")
                conn.execute(f"INSERT INTO {name}_floor SELECT * FROM {name}")
                conn.execute("COMMIT")

        warehouse()  # the tables exist: every timed run replaces the window (delete + insert)
        pandas()
        for name in ("ohlcv_5m", "ohlcv_1h"):
            conn.execute(f"CREATE TABLE {name}_floor AS SELECT * FROM {name}")
        times = interleaved({"pandas": pandas, "warehouse": warehouse, "write_floor": write_floor}, repeats)
        same = conn.execute(
            "SELECT (SELECT count(*) FROM ohlcv_5m) + (SELECT count(*) FROM ohlcv_1h), "
            "(SELECT sum(volume) FROM ohlcv_1h) - (SELECT sum(volume) FROM pandas_1h)"
        ).fetchall()[0]
        conn.close()
    if not (same[0] == counts["warehouse"] == counts["pandas"] and abs(same[1]) < 1e-6 * n):
        raise AssertionError(f"pandas and the warehouse disagree: {counts}, tables {same}")
    x = ratios(times["pandas"], times["warehouse"])
    size = f"{n:,} 1m bars, 20 series -> {counts['warehouse']:,} 5m + 1h bars"
    report = (
        f"1m -> 5m + 1h: {size}; interleaved in one process; {load()}\n"
        f"  pandas (load .df(), dedup, groupby().resample().agg, drop gaps, write) ms {spread(times['pandas'], 1e3)}\n"
        f"  warehouse (resample_bars, the assets' body, both tables) ms {spread(times['warehouse'], 1e3)}\n"
        f"  DuckDB storing the same output rows alone (delete + insert from a table) ms "
        f"{spread(times['write_floor'], 1e3)}: the best any SQL could reach is pandas / that = "
        f"{spread(ratios(times['pandas'], times['write_floor']))}x\n"
        f"  pandas / warehouse: {spread(x)}x"
    )
    median_x = statistics.median(x)
    return [Goal("bars_from_bars", f"{median_x:.1f}x", ">= 50x pandas, same work", median_x >= 50, size)], report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--ticks", type=int, nargs="*", help="tick counts (default 10 M and 50 M)")
    parser.add_argument("--bars", type=int, help="1m bars to resample (default 1 M; 0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method, interleaved (default 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.file)))
        return
    ticks, bars = ([1_000_000, 2_000_000], 200_000) if args.quick else ([10_000_000, 50_000_000], 1_000_000)
    ticks = args.ticks if args.ticks is not None else ticks
    bars = args.bars if args.bars is not None else bars
    print(f"{load()} at start")
    with tempfile.TemporaryDirectory(prefix="bench_resample_") as tmp:
        tick_results = {n: bench_ticks(n, Path(tmp), args.repeats) for n in ticks}
    bar_goal = None
    if bars:
        found, report = measure_bars(bars, max(args.repeats, 5))
        bar_goal = found[0]
        print(f"\n{report}")
    print("\nsummary")
    for n, at in tick_results.items():
        best_pandas = min(at["pandas_groupby"]["total_s"], at["pandas_resample"]["total_s"])
        speed = best_pandas / at["duckdb_warehouse"]["total_s"]
        memory = at["duckdb_warehouse"]["peak_mb"] / min(
            at[m]["peak_mb"] for m in ("pandas_groupby", "pandas_resample")
        )
        # the speed target is set at the smallest size, the memory target at the largest
        speed_verdict = f" (target >= 1): {'met' if speed >= 1 else 'missed'}" if n == min(tick_results) else ""
        memory_verdict = f" (target < 0.25): {'met' if memory < 0.25 else 'missed'}" if n == max(tick_results) else ""
        print(
            f"  {n / 1e6:g} M ticks: warehouse SQL end-to-end {speed:.2f}x the best pandas{speed_verdict}; "
            f"peak memory {memory:.2f} of the leanest pandas'{memory_verdict} (medians of {args.repeats} runs)"
        )
    if bar_goal:
        print(f"  1m -> 5m/1h (the assets' work vs pandas doing the same): {bar_goal.line()}")
    print(f"{load()} at end")


if __name__ == "__main__":
    main()
