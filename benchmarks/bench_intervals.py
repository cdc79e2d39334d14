"""funding_intervals' inputs and inference over years of settlements: every settlement read vs settlement_times.sql.

`funding_intervals` rebuilds the interval history from every settlement landed so far on each run. Inference from
spacing only counts before a key's first reported interval, so `sql/funding/settlement_times.sql` reads the whole
series only of keys that have settlements before it (or no report); a key reported from its first settlement (every
imported archive row states its interval) is read as its last settlement. Both give the same spans (asserted here
and in tests/sql/test_sql_files.py). Sizes as `bench_history`'s funding: 2/3 of the keys 8-hourly, 1/3 hourly, each
reporting its interval on every row. Interleaved (before, after) x repeats; CPU (`time.process_time`, DuckDB's
threads included) beside wall, the load average printed.

    python -m benchmarks.bench_intervals                  # 300 keys x 4 years: 4,383,000 settlements
    python -m benchmarks.bench_intervals --keys 30 --years 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import duckdb
import pandas as pd

from fundarb_dagster.core import funding
from fundarb_dagster.core.sql import load_sql

START_MS = 1_609_459_200_000  # 2021-01-01
# what settlement_times.sql read before: every distinct settlement time (the obvious input)
EVERY_SETTLEMENT = """
SELECT DISTINCT exchange, symbol, funding_ts_ms FROM raw_funding WHERE is_settled = 1
UNION
SELECT DISTINCT exchange, symbol, funding_ts_ms FROM funding_history
"""


def warehouse(keys: int, years: float) -> duckdb.DuckDBPyConnection:
    """raw_funding of `keys` perps over `years` (the first 2/3 of the keys 8-hourly, the rest hourly)."""
    conn = duckdb.connect()
    hours = int(years * 8766)
    conn.execute(
        """CREATE TABLE raw_funding AS
        SELECT 'v' || (k * 3 // $keys) AS exchange, 'S' || k || '/USDT:USDT' AS symbol,
            $start + i * h * 3600000 + 7 AS funding_ts_ms, 1 AS is_settled, h::DOUBLE AS interval_h
        FROM (SELECT k, CASE WHEN k * 3 >= 2 * $keys THEN 1 ELSE 8 END AS h FROM range($keys) t(k)), range($hours) r(i)
        WHERE i < $hours // h""",
        {"keys": keys, "start": START_MS, "hours": hours},
    )
    conn.execute(
        "CREATE TABLE funding_history (exchange VARCHAR, symbol VARCHAR, funding_ts_ms BIGINT, interval_h DOUBLE)"
    )
    return conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--years", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    conn = warehouse(args.keys, args.years)
    reported = conn.execute(load_sql("funding", "interval_observations")).df()
    queries = {"every settlement": EVERY_SETTLEMENT, "settlement_times.sql": load_sql("funding", "settlement_times")}
    cpu: dict[str, list[float]] = {name: [] for name in queries}
    wall: dict[str, list[float]] = {name: [] for name in queries}
    spans: dict[str, pd.DataFrame] = {}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, query in queries.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            spans[name] = funding.interval_spans(reported, conn.execute(query).df(), pd.DataFrame(), pd.DataFrame())
            cpu[name].append(time.process_time() - started_cpu)
            wall[name].append(time.perf_counter() - started)
    before, after = spans.values()
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True), check_dtype=False)
    settlements = conn.execute("SELECT count(*) FROM raw_funding").fetchone()[0]
    print(
        f"{settlements:,} settlements of {args.keys} keys over {args.years:g} years, {len(after)} spans (the same both "
        f"ways); {args.repeats} interleaved repeats; load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    for name in queries:
        print(
            f"{name}: CPU median {statistics.median(cpu[name]):.2f} s ({min(cpu[name]):.2f}-{max(cpu[name]):.2f}); "
            f"wall median {statistics.median(wall[name]):.2f} s ({min(wall[name]):.2f}-{max(wall[name]):.2f})"
        )
    medians = [statistics.median(cpu[name]) for name in queries]
    print(f"CPU: every settlement / settlement_times.sql = {medians[0] / medians[1]:.2f}x")


if __name__ == "__main__":
    main()
