"""TA-Lib indicators inside the warehouse (the `indicators` asset's work: read the 1h bars from DuckDB, compute,
write the table) against the same TA-Lib calls on numpy arrays already in memory, time and peak memory.

One DuckDB file holds `series` x `bars` hourly bars (rows in time order, as hourly partitions insert them).
Each repeat runs both cases in fresh processes, interleaved (raw, warehouse, raw, warehouse, ...), and each
reports its wall time and its peak RSS above an import-only worker's. The warehouse case is
`core.indicators.replace_indicators` on the whole history as one window (a backfill), the table already
holding the rows (a re-run: delete + insert). Beside them, at the quick size, the asset body this replaced
(sorted strings fetched into pandas, a frame per series, a staged write). The floor is DuckDB's own cost
for the same read and write (a plain scan of the input's columns to numpy; the output rows, names joined,
written from Arrow into a new table), what no compute path around the same table can go below on these
cores.

    python -m benchmarks.bench_indicators            # 1000 series x 10 k bars
    python -m benchmarks.bench_indicators --quick    # 200 series x 5 k bars
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Goal, load, peak_rss_mb, ratios, spread, worker

START_US = 1_700_000_000_000_000 // 3_600_000_000 * 3_600_000_000  # an hour boundary
MODULE = "benchmarks.bench_indicators"


def series_arrays(series: int, bars: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series, bars) high, low, close random walks."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (series, bars)), axis=1))
    spread_ = np.abs(rng.normal(0, 0.005, (series, bars))) * close
    return close + spread_, close - spread_, close


def write_bars(database: Path, series: int, bars: int) -> None:
    """ohlcv_1h with the warehouse's columns, rows in time order (hour by hour, every series)."""
    import duckdb
    import pyarrow as pa

    high, low, close = series_arrays(series, bars)
    ids = np.tile(np.arange(series, dtype=np.int32), bars)  # time-major: hour 0 of every series, hour 1, ...
    hours = np.repeat(np.arange(bars, dtype=np.int64), series)
    frame = pa.table(
        {
            "ts": pa.array(START_US + hours * 3_600_000_000, type=pa.timestamp("us")),
            "instrument_id": ids,
            "exchange": pa.array([f"ex{i % 5}" for i in range(series)]).take(pa.array(ids)),
            "symbol": pa.array([f"C{i}/USDT:USDT" for i in range(series)]).take(pa.array(ids)),
            "open": close.T.ravel(),
            "high": high.T.ravel(),
            "low": low.T.ravel(),
            "close": close.T.ravel(),
            "volume": np.ones(series * bars),
            "trade_count": np.ones(series * bars, dtype=np.int64),
            "filled_minutes": np.zeros(series * bars, dtype=np.int64),
            "minutes": np.full(series * bars, 60, dtype=np.int64),
            "is_filled": np.zeros(series * bars, dtype=bool),
        }
    )
    with duckdb.connect(str(database)) as conn:
        conn.register("frame", frame)
        conn.execute("CREATE OR REPLACE TABLE ohlcv_1h AS SELECT * FROM frame")
        conn.execute("CHECKPOINT")


def window(bars: int) -> dict:
    import pandas as pd

    start = pd.Timestamp(START_US, unit="us")
    end = start + pd.Timedelta(hours=bars)
    return {"start": start, "end": end, "start_ms": START_US // 1000, "end_ms": START_US // 1000 + bars * 3_600_000}


def run_case(case: str, database: str, series: int, bars: int) -> dict:
    """One case in this (fresh) process: its seconds and its peak RSS."""
    import duckdb
    import pyarrow as pa

    from fundarb_dagster.core import indicators as ind
    from fundarb_dagster.core.sql import load_sql

    params = ind.IndicatorParams()
    if case == "baseline":
        return {"case": case, "s": 0.0, "peak_mb": peak_rss_mb()}
    if case == "raw":
        high, low, close = series_arrays(series, bars)
        t0 = time.perf_counter()
        out = [ind.compute(high[k], low[k], close[k], params) for k in range(series)]
        seconds = time.perf_counter() - t0
        assert len(out) == series
    elif case == "warehouse":
        t0 = time.perf_counter()
        with duckdb.connect(database) as conn:
            rows, _ = ind.replace_indicators(conn, params, window(bars))
        seconds = time.perf_counter() - t0
        assert rows == series * bars, rows
    elif case == "frames":  # the asset body this replaced: sorted strings to pandas, a frame per series, staged
        import pandas as pd

        from fundarb_dagster.core.sql import registered, replace_window

        w = window(bars)
        t0 = time.perf_counter()
        with duckdb.connect(database) as conn:
            frame = conn.execute(
                "SELECT exchange, symbol, ts, high, low, close FROM ohlcv_1h WHERE ts >= $start AND ts < $end "
                "ORDER BY exchange, symbol, ts",
                bind_window(w),
            ).df()
            values = ind.frame_indicators(frame, params)
            values["ts"] = pd.to_datetime(values["ts"])
            with registered(conn, "indicator_frame", values):
                rows = replace_window(conn, "indicators_frames", "SELECT * FROM indicator_frame", bind_window(w))
        seconds = time.perf_counter() - t0
        assert rows == series * bars, rows
    elif case == "floor":  # DuckDB's own read (the input query to numpy) and write (the output from Arrow)
        w = window(bars)
        with duckdb.connect(database) as conn:
            t0 = time.perf_counter()
            got = conn.execute("SELECT instrument_id, epoch_us(ts) AS ts_us, close FROM ohlcv_1h").fetchnumpy()
            read_s = time.perf_counter() - t0
            n = len(got["close"])
            frame = pa.table(
                {"instrument_id": got["instrument_id"], "ts_us": got["ts_us"]}
                | {name: got["close"] for name in ("close", *ind.INDICATOR_COLUMNS)}
            )
            conn.register("indicator_values", frame)
            t1 = time.perf_counter()
            conn.execute("CREATE OR REPLACE TABLE floor_copy AS " + load_sql("market", "indicators"), bind_window(w))
            write_s = time.perf_counter() - t1
            conn.execute("DROP TABLE floor_copy")
        assert n == series * bars
        return {"case": case, "s": read_s + write_s, "read_s": read_s, "write_s": write_s, "peak_mb": peak_rss_mb()}
    else:
        raise ValueError(f"case: {case!r} unknown")
    return {"case": case, "s": seconds, "peak_mb": peak_rss_mb()}


def bind_window(w: dict) -> dict:
    return {"start": w["start"], "end": w["end"]}


def measure(series: int, bars: int, repeats: int, with_frames: bool = True) -> tuple[list[Goal], str]:
    with tempfile.TemporaryDirectory(prefix="bench_indicators_") as tmp:
        database = str(Path(tmp) / "warehouse.duckdb")
        write_bars(Path(database), series, bars)
        args = (database, str(series), str(bars))
        worker(MODULE, "warehouse", *args)  # the first run creates the table; every timed run replaces it
        cases = ["raw", "warehouse", "floor"] + (["frames"] if with_frames else [])
        if with_frames:
            worker(MODULE, "frames", *args)
        baseline = worker(MODULE, "baseline", *args)["peak_mb"]
        runs: dict[str, list[dict]] = {case: [] for case in cases}
        for _ in range(repeats):
            for case in runs:
                runs[case].append(worker(MODULE, case, *args))
    s = {case: [r["s"] for r in rs] for case, rs in runs.items()}
    mem = {case: statistics.median(r["peak_mb"] - baseline for r in rs) for case, rs in runs.items()}
    time_x = ratios(s["warehouse"], s["raw"])
    floor_x = ratios([a + b for a, b in zip(s["floor"], s["raw"], strict=True)], s["raw"])
    mem_x = mem["warehouse"] / max(mem["raw"], 1.0)
    size = f"{series} series x {bars:,} bars ({series * bars / 1e6:g} M rows)"
    report = "\n".join(
        [
            f"indicators inside the warehouse: {size}; each case a fresh process, interleaved; {load()}",
            f"  raw TA-Lib on numpy           s {spread(s['raw'])}  peak MB over imports {mem['raw']:.0f}",
            f"  warehouse (replace_indicators) s {spread(s['warehouse'])}  peak MB over imports {mem['warehouse']:.0f}",
            f"  DuckDB floor: read {spread([r['read_s'] for r in runs['floor']])} s + "
            f"write {spread([r['write_s'] for r in runs['floor']])} s",
            f"  warehouse / raw: {spread(time_x)}x; (floor + raw) / raw: {spread(floor_x)}x; memory {mem_x:.2f}x",
        ]
    )
    if with_frames:
        report += (
            f"\n  the previous asset body (sorted strings to pandas, a frame per series, staged write) s "
            f"{spread(s['frames'])}, peak MB {mem['frames']:.0f}: {spread(ratios(s['frames'], s['warehouse']))}x "
            f"the warehouse path's time"
        )
    median_x = statistics.median(time_x)
    goals = [
        Goal(
            "indicators_in_warehouse",
            f"{median_x:.2f}x",
            "<= 2x raw TA-Lib time",
            median_x <= 2.0,
            f"{size}; warehouse/raw {spread(time_x)}; DuckDB read+write alone {spread(floor_x)}x raw",
        ),
        Goal("indicators_memory", f"{mem_x:.2f}x", "<= 3x raw TA-Lib memory", mem_x <= 3.0, size),
    ]
    return goals, report


def goals(quick: bool) -> tuple[list[Goal], str]:
    # at full size the previous path takes ~25 s a run: it is measured at the quick size only
    return measure(200, 5_000, 5) if quick else measure(1000, 10_000, 5, with_frames=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--series", type=int)
    parser.add_argument("--bars", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-frames", action="store_true", help="skip the previous (pandas) asset body")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, database, series, bars = args.worker
        print(json.dumps(run_case(case, database, int(series), int(bars)), default=float))
        return
    series = args.series or (200 if args.quick else 1000)
    bars = args.bars or (5_000 if args.quick else 10_000)
    found, report = measure(series, bars, args.repeats, with_frames=not args.no_frames)
    print(report)
    for goal in found:
        print(goal.line())


if __name__ == "__main__":
    main()
