"""How each warehouse step's cost grows with the data it processes: windows of 1, 4, 16 and 64 hours (10
series), and 10, 100 and 1000 series (one hour), each step's body run as its asset runs it.

- market bars and indicators on a DuckDB file already holding the trades: the SQL through replace_window,
  indicators through replace_indicators;
- the funding and positioning domains on a landing zone written by the real landing writer (tickers, funding
  predictions and settlements, order books, open interest of 5 venues): the raw tables' loads
  (`load_landed_window`), then funding_intervals, funding_predictions, funding_rates, basis, funding_spreads,
  opportunities, open_interest and book_depth, each asset's own function with its resources (whole body: SQL,
  core functions, the window's write and the run's metadata, plots included).

Prints each step's fixed cost and its cost per hour / per series (a least-squares line through the medians),
and whether anything grows faster than linearly: the growth exponent between the two largest sizes
(log of the time ratio over log of the size ratio) may be at most 1.2 (1: linear; 2: quadratic). Sizes run
interleaved (1, 4, 16, 64, 1, 4, ...), so load hits them alike. Not covered: the backtest domain
(bench_backtest) and the trades/ohlcv raw loads (bench_recovery and bench_incremental time the landing side).

    python -m benchmarks.bench_growth            # a trade every 6 s per series, 5 repeats
    python -m benchmarks.bench_growth --quick    # a trade every 30 s, 3 repeats, the funding domain to 300 series
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
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
            conn,
            "ohlcv_1m",
            load_sql("market", "ohlcv_1m"),
            {**w, "horizon_ms": 86_400_000, "now_ms": 2**62, "bars_from_ms": w["start_ms"]},
        ),
        "ohlcv_5m": lambda w: replace_window(conn, "ohlcv_5m", bars, {**w, "bucket_us": 300_000_000}),
        "ohlcv_1h": lambda w: replace_window(conn, "ohlcv_1h", bars, {**w, "bucket_us": HOUR_US}),
        "indicators": lambda w: ind.replace_indicators(conn, ind.IndicatorParams(), w)[0],
    }


# -- the funding and positioning domains: the assets' bodies, invoked directly on landed data ---------------
VENUES = ("binance", "bybit", "okx", "gate", "hyperliquid")  # hyperliquid settles hourly, the others every 8 h
CARRY_TABLES = ("raw_funding", "raw_tickers", "raw_order_book", "raw_open_interest")


def land_carry(data_dir: Path, series: int, hours: int, step_s: int, seed: int) -> None:
    """`series` perps (the venues in turn, 5 per underlying) and their venues' spot markets over `hours` hours
    from START, landed through the real landing writer: tickers and a funding prediction every ~step_s, the
    settlements on each venue's grid, an order book and the open interest every 4 x step_s."""
    from fundarb_dagster.core import landing, schema

    rng = np.random.default_rng(seed)
    names = {i: (VENUES[i % 5], f"U{i // 5}/USDT:USDT") for i in range(series)}
    names.update({series + i: (VENUES[i % 5], f"U{i // 5}/USDT") for i in range(series)})
    start_ms, end_ms = START_US // 1000, START_US // 1000 + hours * HOUR_US // 1000
    times = start_ms + np.arange(0, hours * 3600, step_s, dtype=np.int64) * 1000
    perps, t = np.repeat(np.arange(series, dtype=np.int32), len(times)), np.tile(times, series)
    t = t + rng.integers(0, step_s * 1000, len(t))
    interval_h = np.where(perps % 5 == 4, 1.0, 8.0)
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 2e-4, (series, len(times))), axis=1)).ravel()

    def write(stream: str, rec: np.ndarray, writer: str) -> None:
        landing.write_stream(data_dir, stream, schema.to_arrow(stream, rec, names), writer, 0)

    tick = schema.empty("tickers", 2 * len(t))
    for half, (ids, scale) in enumerate(((perps, 1.0005), (perps + series, 1.0))):
        part = slice(half * len(t), (half + 1) * len(t))
        tick["ts_ms"][part], tick["recv_ts_ms"][part], tick["instrument_id"][part] = t, t + 5, ids
        tick["bid"][part], tick["ask"][part] = mid * scale * 0.9999, mid * scale * 1.0001
        tick["bid_size"][part] = tick["ask_size"][part] = 5.0
        tick["last"][part] = mid * scale
    write("tickers", tick, "bench-tickers")
    pred = schema.empty("funding", len(t))
    span_ms = (interval_h * HOUR_US // 1000).astype(np.int64)
    pred["ts_ms"], pred["recv_ts_ms"], pred["instrument_id"] = t, t + 5, perps
    pred["funding_ts_ms"] = (t // span_ms + 1) * span_ms
    pred["funding_rate"] = rng.normal(1e-4, 5e-5, len(t)) * interval_h / 8
    pred["interval_h"], pred["mark_price"], pred["index_price"] = interval_h, mid * 1.0005, mid
    write("funding", pred, "bench-predicted")
    settled = []
    for i in range(series):
        span = (1 if i % 5 == 4 else 8) * HOUR_US // 1000
        grid = np.arange(-(-start_ms // span) * span, end_ms, span, dtype=np.int64)
        rec = schema.empty("funding", len(grid))
        rec["ts_ms"] = rec["funding_ts_ms"] = grid
        rec["recv_ts_ms"], rec["instrument_id"], rec["is_settled"] = grid + 40, i, 1
        rec["funding_rate"], rec["interval_h"] = (
            rng.normal(1e-4, 5e-5, len(grid)) * span / (8 * HOUR_US // 1000),
            (span / (HOUR_US // 1000)),
        )
        settled.append(rec)
    write("funding", np.concatenate(settled), "bench-settled")
    every = slice(None, None, 4)
    book = schema.empty("order_book", len(t[every]))
    book["ts_ms"], book["recv_ts_ms"], book["instrument_id"] = t[every], t[every] + 5, perps[every]
    levels = 1 + np.arange(schema.BOOK_LEVELS) * 1e-4
    book["bid_price"], book["ask_price"] = mid[every, None] / levels, mid[every, None] * levels
    book["bid_size"] = book["ask_size"] = 2.0
    book["nonce"], book["updates"] = np.arange(len(book)), 1
    write("order_book", book, "bench-books")
    interest = schema.empty("open_interest", len(t[every]))
    interest["ts_ms"], interest["recv_ts_ms"], interest["instrument_id"] = t[every], t[every] + 5, perps[every]
    interest["contracts"] = interest["amount"] = 1e6 + np.cumsum(rng.normal(0, 100, len(interest)))
    interest["value"], interest["contract_size"] = interest["amount"] * mid[every], 1.0
    write("open_interest", interest, "bench-interest")


def carry_steps(data_dir: Path) -> dict[str, Callable[[dict], Any]]:
    """Each step of the funding and positioning domains as its asset runs it: the raw tables' loads from the
    landing zone (`load_landed_window`, the raw assets' body) and each asset's own function (its whole body: SQL
    reads, the core functions, the window's write, the run's metadata) called with its resources and a context
    giving the window, without Dagster's run machinery (Dagster's direct invocation takes one partition only)."""
    from dagster_duckdb import DuckDBResource

    from fundarb_dagster.core.window import window_from_ms
    from fundarb_dagster.defs.common.landing import load_landed_window
    from fundarb_dagster.defs.funding import assets as funding
    from fundarb_dagster.defs.market import assets as market
    from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource

    duckdb = DuckDBResource(database=str(data_dir / "warehouse.duckdb"))
    data, source = DataDirResource(data_dir=str(data_dir)), SourceConfigResource(config_path="")
    log = logging.getLogger("bench_growth")

    def body(asset: Any, **kwargs: Any) -> Callable[[dict], Any]:
        fn = asset.op.compute_fn.decorated_fn

        def run(w: dict) -> Any:
            span = SimpleNamespace(start=w["start"].to_pydatetime(), end=w["end"].to_pydatetime())
            # what partitions.partition_window asks of a step's context: the run's partitions are the asset's
            step = SimpleNamespace(run_partitions_def=asset.partitions_def)
            context = SimpleNamespace(
                partition_time_window=span,
                log=log,
                asset_key=asset.key,
                assets_def=asset,
                get_step_execution_context=lambda: step,
            )
            return fn(context, duckdb=duckdb, **kwargs)

        return run

    def raw(table: str) -> Callable[[dict], Any]:
        return lambda w: load_landed_window(duckdb, data_dir, table, window_from_ms(w["start_ms"], w["end_ms"]))

    intervals = funding.FundingIntervalsConfig(use_market_info=False)
    # a day's look-back (the default is two weeks): the synthetic history is at most 65 hours
    opps = funding.OpportunitiesConfig(horizon_h=8, lookback_h=24, min_obs=1)
    return {
        **{table: raw(table) for table in CARRY_TABLES},
        "funding_intervals": body(funding.funding_intervals, config=intervals, data_dir=data, source=source),
        "funding_predictions": body(funding.funding_predictions, data_dir=data),
        "funding_rates": body(funding.funding_rates, data_dir=data),
        "basis": body(funding.basis, data_dir=data),
        "funding_spreads": body(funding.funding_spreads, data_dir=data),
        "opportunities": body(funding.opportunities, config=opps, data_dir=data, source=source),
        "open_interest": body(market.open_interest, data_dir=data),
        "book_depth": body(market.book_depth, config=market.BookDepthConfig(), data_dir=data),
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


def measure_axis(cases: dict[int, tuple[dict[str, Callable[[dict], Any]], dict]], repeats: int) -> dict:
    """{step: {size: [seconds]}}: for each size (its steps, its window) the steps in order, sizes interleaved
    across repeats."""
    out: dict[str, dict[int, list[float]]] = {name: {s: [] for s in cases} for name in next(iter(cases.values()))[0]}
    for _ in range(repeats):
        for size, (runs, w) in cases.items():
            for name, step in runs.items():
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


def goals(quick: bool, smoke: bool = False) -> tuple[list[Goal], str]:
    """`quick`: a trade every 30 s, 3 repeats, the funding domain at 10/100/300 series (opportunities costs ~0.1 s
    a series); `smoke`: 1 and 4 hours, 10 and 20 series, one repeat (proves it runs; the figures mean nothing)."""
    step_s, repeats = (600, 1) if smoke else (30, 3) if quick else (6, 5)
    hours, series = ((1, 4), (10, 20)) if smoke else (HOURS, SERIES)
    carry_series = (10, 20) if smoke else (10, 100, 300) if quick else SERIES
    lines = [f"cost growth per warehouse step: a trade every {step_s} s per series, {repeats} repeats; {load()}"]
    found = []
    with tempfile.TemporaryDirectory(prefix="bench_growth_") as tmp:
        conn = open_warehouse(Path(tmp) / "hours.duckdb")
        fill_trades(conn, 10, max(hours) + 1, step_s, 0, 1)
        # hour 0 is history (ohlcv_1m carries the previous close across windows): windows start at hour 1
        by_hours = measure_axis({h: (steps(conn), window(h, 1)) for h in hours}, repeats)
        conn.close()
        conns = {n: open_warehouse(Path(tmp) / f"series_{n}.duckdb") for n in series}
        for n, c in conns.items():
            fill_trades(c, n, 2, step_s, 0, 2)
        by_series = measure_axis({n: (steps(c), window(1, 1)) for n, c in conns.items()}, repeats)
        for c in conns.values():
            c.close()
        # funding and positioning: a landing zone and warehouse per size (funding_intervals and opportunities
        # read all the history there is), hour 0 again history
        carry_hours, carry_sizes = {}, {}
        for h in hours:
            land_carry(Path(tmp) / f"carry_h{h}", 10, h + 1, step_s, 3)
            carry_hours[h] = (carry_steps(Path(tmp) / f"carry_h{h}"), window(h, 1))
        carry_by_hours = measure_axis(carry_hours, repeats)
        for n in carry_series:
            land_carry(Path(tmp) / f"carry_s{n}", n, 2, step_s, 4)
            carry_sizes[n] = (carry_steps(Path(tmp) / f"carry_s{n}"), window(1, 1))
        carry_by_series = measure_axis(carry_sizes, repeats)
    lines.append(
        "  funding and positioning: 5 venues (hyperliquid hourly, the others 8 h), a perp and a spot market per "
        f"venue and underlying; tickers and funding predictions every ~{step_s} s, books and open interest every "
        f"~{4 * step_s} s; a series is a perp; the assets' bodies include their run metadata (plots, heat maps)"
    )
    for axis, sizes, results, unit in (
        ("hours (10 series)", hours, by_hours, "hour"),
        ("series (1 hour)", series, by_series, "series"),
        ("hours (10 series)", hours, carry_by_hours, "hour"),
        ("series (1 hour)", carry_series, carry_by_series, "series"),
    ):
        lines.append(f"  by {axis}: median ms at {', '.join(map(str, sizes))}; fixed + per {unit}; exponent")
        for name, per_size in results.items():
            medians = [statistics.median(per_size[s]) for s in sizes]
            fixed, per_unit, growth = fit(sizes, medians)
            ok = growth <= 1.2
            lines.append(
                f"    {name:19s} {' '.join(f'{m * 1e3:8.1f}' for m in medians)}   "
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
