"""How each market warehouse step's cost grows with the data it processes: windows of 1, 4, 16 and 64 hours
(10 series), and 10, 100 and 1000 series (one hour), each step's body run as its asset runs it (the SQL through
replace_window; indicators through replace_indicators) on a DuckDB file already holding the trades.

Prints each step's fixed cost and its cost per hour / per series (a least-squares line through the medians),
and whether anything grows faster than linearly: the growth exponent between the two largest sizes
(log of the time ratio over log of the size ratio) may be at most 1.2 (1: linear; 2: quadratic). Sizes run
interleaved (1, 4, 16, 64, 1, 4, ...), so load hits them alike. Not covered: the raw tables' load from
Parquet (bench_recovery and bench_incremental time the landing side) and the funding/backtest domains.

    python -m benchmarks.bench_growth            # a trade every 6 s per series, 5 repeats
    python -m benchmarks.bench_growth --quick    # a trade every 30 s, 3 repeats
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Goal, load

HOUR_US = 3_600_000_000
START_US = 1_761_955_200_000_000  # 2025-11-01 00:00 UTC
HOURS = (1, 4, 16, 64)
SERIES = (10, 100, 1000)


def fill_trades(conn: Any, series: int, hours: int, step_s: int, first_id: int, seed: int) -> None:
    """raw_trades of `series` instruments (ids from first_id) over `hours` hours, a trade every ~step_s."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    per = hours * 3600 // step_s
    ts_ms = START_US // 1000 + np.arange(per, dtype=np.int64) * step_s * 1000
    ids = np.repeat(np.arange(first_id, first_id + series, dtype=np.int32), per)
    ts = np.tile(ts_ms, series) + rng.integers(0, step_s * 1000, series * per)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 5e-4, (series, per)), axis=1)).ravel()
    frame = pa.table(
        {
            "instrument_id": ids,
            "exchange": pa.array([f"ex{i % 5}" for i in range(first_id, first_id + series)]).take(
                pa.array(ids - first_id)
            ),
            "symbol": pa.array([f"C{i}/USDT:USDT" for i in range(first_id, first_id + series)]).take(
                pa.array(ids - first_id)
            ),
            "ts_ms": ts,
            "ts": pa.array(ts * 1000, type=pa.timestamp("us")),
            "trade_id": np.arange(len(ts), dtype=np.int64) + first_id * 10**9,
            "price": price,
            "amount": rng.exponential(1.0, len(ts)),
        }
    )
    conn.register("new_trades", frame)
    conn.execute("INSERT INTO raw_trades BY NAME SELECT * FROM new_trades ORDER BY ts")
    conn.unregister("new_trades")


def steps(conn: Any) -> dict[str, Callable[[dict], int]]:
    from fundarb_dagster.core import indicators as ind
    from fundarb_dagster.core.sql import load_sql, replace_window

    bars = load_sql("market", "bars_from_1m")
    return {
        "ohlcv_1m": lambda w: replace_window(
            conn, "ohlcv_1m", load_sql("market", "ohlcv_1m"), {**w, "horizon_ms": 86_400_000, "now_ms": 2**62}
        ),
        "ohlcv_5m": lambda w: replace_window(conn, "ohlcv_5m", bars, {**w, "bucket_us": 300_000_000}),
        "ohlcv_1h": lambda w: replace_window(conn, "ohlcv_1h", bars, {**w, "bucket_us": HOUR_US}),
        "indicators": lambda w: ind.replace_indicators(conn, ind.IndicatorParams(), w)[0],
    }


def window(hours: int, offset_h: int = 0) -> dict:
    import pandas as pd

    start_us = START_US + offset_h * HOUR_US
    start, end = pd.Timestamp(start_us, unit="us"), pd.Timestamp(start_us + hours * HOUR_US, unit="us")
    return {"start": start, "end": end, "start_ms": start_us // 1000, "end_ms": (start_us + hours * HOUR_US) // 1000}


def open_warehouse(path: Path) -> Any:
    import duckdb

    from fundarb_dagster.core.sql import load_sql
    from fundarb_dagster.defs.common.landing import ensure_raw_tables

    conn = duckdb.connect(str(path))
    ensure_raw_tables(conn, path.parent / "data", "raw_trades", "raw_ohlcv")
    conn.execute(load_sql("market", "ohlcv_1m_table"))
    return conn


def measure_axis(cases: dict[int, tuple[Any, dict]], repeats: int) -> dict:
    """{step: {size: [seconds]}}: for each size (its warehouse, its window) the steps in order, sizes
    interleaved across repeats."""
    runs = {size: steps(conn) for size, (conn, _) in cases.items()}
    out: dict[str, dict[int, list[float]]] = {name: {s: [] for s in cases} for name in next(iter(runs.values()))}
    for _ in range(repeats):
        for size, (_, w) in cases.items():
            for name, step in runs[size].items():
                t0 = time.perf_counter()
                step(w)
                out[name][size].append(time.perf_counter() - t0)
    return out


def fit(sizes: tuple[int, ...], medians: list[float]) -> tuple[float, float, float]:
    """(fixed s, s per unit) of a least-squares line through the medians, and the growth exponent between the
    two largest sizes, log(t2 / t1) / log(n2 / n1): 1 for a cost proportional to the size, below 1 with a fixed
    part, 2 for a quadratic one."""
    per_unit, fixed = np.polyfit(np.asarray(sizes, float), np.asarray(medians), 1)
    exponent = math.log(medians[-1] / medians[-2]) / math.log(sizes[-1] / sizes[-2])
    return float(fixed), float(per_unit), exponent


def goals(quick: bool) -> tuple[list[Goal], str]:
    step_s, repeats = (30, 3) if quick else (6, 5)
    lines = [f"cost growth per warehouse step: a trade every {step_s} s per series, {repeats} repeats; {load()}"]
    found = []
    with tempfile.TemporaryDirectory(prefix="bench_growth_") as tmp:
        conn = open_warehouse(Path(tmp) / "hours.duckdb")
        fill_trades(conn, 10, max(HOURS) + 1, step_s, 0, 1)
        # hour 0 is history (ohlcv_1m carries the previous close across windows): windows start at hour 1
        by_hours = measure_axis({h: (conn, window(h, 1)) for h in HOURS}, repeats)
        conn.close()
        conns = {n: open_warehouse(Path(tmp) / f"series_{n}.duckdb") for n in SERIES}
        for n, c in conns.items():
            fill_trades(c, n, 2, step_s, 0, 2)
        by_series = measure_axis({n: (c, window(1, 1)) for n, c in conns.items()}, repeats)
        for c in conns.values():
            c.close()
    for axis, sizes, results, unit in (
        ("hours (10 series)", HOURS, by_hours, "hour"),
        ("series (1 hour)", SERIES, by_series, "series"),
    ):
        lines.append(f"  by {axis}: median ms at {', '.join(map(str, sizes))}; fixed + per {unit}; exponent")
        for name, per_size in results.items():
            medians = [statistics.median(per_size[s]) for s in sizes]
            fixed, per_unit, growth = fit(sizes, medians)
            ok = growth <= 1.2
            lines.append(
                f"    {name:11s} {' '.join(f'{m * 1e3:8.1f}' for m in medians)}   "
                f"{fixed * 1e3:7.1f} ms + {per_unit * 1e3:7.3f} ms/{unit}   growth exponent {growth:.2f}"
            )
            found.append(
                Goal(
                    f"growth_{name}_per_{unit}",
                    f"{growth:.2f}",
                    "growth exponent <= 1.2",
                    ok,
                    f"{fixed * 1e3:.1f} ms + {per_unit * 1e3:.3f} ms/{unit}",
                )
            )
    return found, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    found, report = goals(args.quick)
    print(report)
    for goal in found:
        print(goal.line())


if __name__ == "__main__":
    main()
