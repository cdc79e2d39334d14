"""Writers sharing one warehouse: a DuckLake on Postgres written by 1, 2 and 3 processes at once, against the
single DuckDB file (whose one-writer lock makes a second process wait).

The work: `hours` hourly windows of one trades table, `rows` rows each, every window written as an asset step
writes it (`core/warehouse.connect` opens the warehouse, `core/sql.replace_window` deletes the window and
inserts it in one transaction). With N writers each process writes its own hours (hour % N); all processes
start together (a start time they wait for, so Python's start-up is not timed) and the figure is total rows
over the wall time until the last one ends. Every case starts on an empty warehouse (a new Postgres database
for the lake) and is checked afterwards: every row landed once.

Each case's processes run with the `lake` extra (duckdb 1.5.5 and its extensions, installed into a folder on
their PYTHONPATH), the DuckDB file too, so only the storage differs. Needs PostgreSQL's server binaries
(`apt-get install postgresql`) and pip's index.

    python -m benchmarks.bench_lake             # 24 windows x 100,000 rows, median of 3, interleaved
    python -m benchmarks.bench_lake --quick     # 6 windows x 20,000 rows, to check it runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.harness import ratios, spread  # noqa: E402
from tests.servers import create_database, install_lake_extra, postgres_server  # noqa: E402

HOUR_MS = 3_600_000
T0_MS = 1_762_000_000_000 // HOUR_MS * HOUR_MS
TABLE = "bench_trades"
FRAME = """
SELECT make_timestamp(ts_ms * 1000) AS ts, exchange, symbol, trade_id, price, amount, side
FROM frame WHERE ts_ms >= epoch_ms($start) AND ts_ms < epoch_ms($end)
"""


def worker(target: str, hours: list[int], rows: int, start_at: float) -> None:
    """One writer process: generate its windows, wait for the common start, write them one by one."""
    from datetime import UTC, datetime

    import numpy as np
    import pandas as pd

    from fundarb_dagster.core.sql import registered, replace_window
    from fundarb_dagster.core.warehouse import connect

    frames = {}
    for hour in hours:
        rng = np.random.default_rng(hour)
        ts = T0_MS + hour * HOUR_MS + np.sort(rng.integers(0, HOUR_MS, rows))
        frames[hour] = pd.DataFrame(
            {
                "ts_ms": ts,
                "exchange": "binance",
                "symbol": "BTC/USDT:USDT",
                "trade_id": hour * rows + np.arange(rows),
                "price": 100_000 + rng.normal(0, 50, rows).cumsum(),
                "amount": rng.exponential(0.05, rows),
                "side": rng.integers(0, 2, rows).astype(np.int8),
            }
        )
    time.sleep(max(0.0, start_at - time.time()))
    begun = time.time()
    for hour, frame in frames.items():
        start = datetime.fromtimestamp((T0_MS + hour * HOUR_MS) / 1000, UTC).replace(tzinfo=None)
        end = datetime.fromtimestamp((T0_MS + (hour + 1) * HOUR_MS) / 1000, UTC).replace(tzinfo=None)
        conn = connect(target)  # one connection per window, as each asset step opens its own
        try:
            with registered(conn, "frame", frame):
                replace_window(conn, TABLE, FRAME, {"start": start, "end": end}, staged=False)
        finally:
            conn.close()
    print(json.dumps({"begun": begun, "ended": time.time()}))


def run_case(target: str, writers: int, hours: int, rows: int, env: dict[str, str]) -> float:
    """Wall seconds for `writers` processes to write `hours` windows between them; checks every row landed."""
    start_at = time.time() + 4.0 + writers  # every process imported and its frames made by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_lake", "--worker", target, str(rows), str(start_at)]
            + [str(h) for h in range(hours) if h % writers == w],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    spans = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"writer failed: {err[-3000:]}")
        spans.append(json.loads(out.strip().splitlines()[-1]))
    if min(s["begun"] for s in spans) < start_at - 0.01:
        raise RuntimeError("a writer started before the common start time")
    count = f"SELECT count(*), count(DISTINCT trade_id) FROM {TABLE}"
    check = "import sys; from fundarb_dagster.core.warehouse import connect; "
    check += f"print(connect(sys.argv[1]).execute({count!r}).fetchone())"
    counted = subprocess.run(
        [sys.executable, "-c", check, target], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if counted != str((hours * rows, hours * rows)):
        raise RuntimeError(f"{target}: {counted} rows, expected {hours * rows} once each")
    return max(s["ended"] for s in spans) - start_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        target, rows, start_at, *hours = args.worker
        worker(target, [int(h) for h in hours], int(rows), float(start_at))
        return
    hours, rows = (6, 20_000) if args.quick else (24, 100_000)
    cases = [("file", 1), ("file", 2), ("lake", 1), ("lake", 2), ("lake", 3)]
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp, postgres_server() as server:
        folder = Path(tmp)
        site = install_lake_extra(folder / "site")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
        env["FUNDARB_LAKE_DATA"] = str(folder / "lake_files")
        print(f"{hours} hourly windows x {rows:,} rows = {hours * rows:,} rows of {TABLE} per case, one")
        print("connection per window; duckdb 1.5.5 (the lake extra) in every process; cases interleaved")
        times: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
        for repeat in range(args.repeats):
            for kind, writers in cases:
                name = f"r{repeat}_{kind}{writers}"
                if kind == "lake":
                    port = create_database(server, name).rsplit(":", 1)[1].split("/")[0]
                    target = f"ducklake:postgres:dbname={name} host=127.0.0.1 port={port} user=postgres"
                    env["FUNDARB_LAKE_DATA"] = str(folder / f"lake_files_{name}")
                else:
                    target = str(folder / f"{name}.duckdb")
                seconds = run_case(target, writers, hours, rows, env)
                times[(kind, writers)].append(seconds)
                print(
                    f"  repeat {repeat + 1}: {kind} x{writers}: {seconds:.2f} s, {hours * rows / seconds:,.0f} rows/s"
                )
    print(f"\n{'case':34s} {'wall s, median (min-max)':>30s} {'rows/s (median)':>16s}")
    for (kind, writers), values in times.items():
        label = f"{'DuckLake on Postgres' if kind == 'lake' else 'DuckDB file'}, {writers} writer(s)"
        rate = hours * rows / statistics.median(values)
        print(f"{label:34s} {spread(values, fmt='.2f'):>30s} {rate:>16,.0f}")
    print()
    for writers in (2, 3):
        speedup = ratios(times[("lake", 1)], times[("lake", writers)])
        print(f"lake x{writers} vs lake x1 (throughput): {spread(speedup, fmt='.2f')}")
    for writers in (1, 2, 3):
        against = ratios(times[("file", 1)], times[("lake", writers)])
        print(f"lake x{writers} vs DuckDB file x1 (throughput): {spread(against, fmt='.2f')}")
    print(f"DuckDB file x2 vs x1 (throughput): {spread(ratios(times[('file', 1)], times[('file', 2)]), fmt='.2f')}")


if __name__ == "__main__":
    main()
