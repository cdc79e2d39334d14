"""Years of history at scale: Binance-archive files imported into the landing zone, then materialized.

Generates, in Binance's public-archive formats (data.binance.vision): monthly `fundingRate` CSVs
(`calc_time,funding_interval_hours,last_funding_rate`) for venues x symbols x years, 8-hourly on the first
venues and hourly on the last (mixed as funding_spreads compares them), and monthly 1m `klines` CSVs (12
columns, no header) for spot symbols. Then, timing each part:

1. `import_files` of each venue's whole folder (symbols from the file names): rows/s, landing files written,
   beside the obvious alternative on a sample: the same rows landed as capture-style hour files per symbol
   (what the importer wrote before), extrapolated to the full size, and pandas file by file; and the floor
   below which the import cannot go on these cores: pyarrow's CSV reader on the same bytes in memory and the
   Parquet writer writing the same day files (`--no-floor` skips it);
2. `fundarb backfill` (`backfill.backfill`): history_job (the same tables on monthly partitions) over the months
   up to the newest landed day, in runs of up to `HISTORY_RUN_MONTHS` months, then hourly_job (raw tables, bars,
   funding) and signals_job (funding_spreads, opportunities, alerts) over the newest day, each run's wall time
   beside its steps' time (the difference is Dagster's own cost per run), its event writes, the peak memory.

    python -m benchmarks.bench_history                    # 300 venue-symbols x 4 y funding, 20 x 1 y of 1m klines
    python -m benchmarks.bench_history --quick            # 3 x 4 symbols x 3 months, 2 x 14 days: a smoke run
    python -m benchmarks.bench_history --funding-symbols 30 --years 1 --kline-days 90   # what fits
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

warnings.filterwarnings("ignore")

START_MS = 1_609_459_200_000  # 2021-01-01 00:00 UTC
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
VENUES = ("binance", "bybit", "hyperliquid")  # 8h, 8h, 1h
CHECKS = "ASSET_CHECK_EVALUATION"  # the event type a check records per partition
CPU_SECONDS: list[float] = []  # each import_venue's CPU time (every thread of this process)
MAIN_SECONDS: list[float] = []  # each import_venue's CPU time on the calling thread (what a second core cannot share)


def month_starts(start_ms: int, months: int) -> list[int]:
    out, t = [], datetime.fromtimestamp(start_ms / 1000, tz=UTC)
    for _ in range(months + 1):
        out.append(int(t.timestamp() * 1000))
        t = t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1)
    return out


def write_funding(root: Path, venue: str, ids: list[str], interval_h: int, months: int, seed: int) -> int:
    """One monthly fundingRate CSV per symbol and month, as Binance ships them; returns rows written."""
    rng = np.random.default_rng(seed)
    bounds = month_starts(START_MS, months)
    rows = 0
    for sym in ids:
        folder = root / venue / "futures" / "um" / "monthly" / "fundingRate" / sym
        folder.mkdir(parents=True, exist_ok=True)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            t = np.arange(lo, hi, interval_h * HOUR_MS, dtype=np.int64) + rng.integers(0, 9, 1)[0]  # ms jitter
            rate = rng.normal(1e-4, 2e-4, len(t)) * interval_h / 8
            table = pa.table(
                {
                    "calc_time": t,
                    "funding_interval_hours": np.full(len(t), interval_h),
                    "last_funding_rate": np.round(rate, 8),
                }
            )
            stamp = datetime.fromtimestamp(lo / 1000, tz=UTC)
            with open(folder / f"{sym}-fundingRate-{stamp:%Y-%m}.csv", "wb") as handle:  # Binance's header, unquoted
                handle.write(b"calc_time,funding_interval_hours,last_funding_rate\n")
                pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False))
            rows += len(t)
    return rows


def write_klines(root: Path, ids: list[str], days: int, seed: int) -> int:
    """Monthly 1m klines CSVs (12 columns, no header) per spot symbol; returns rows written."""
    rng = np.random.default_rng(seed)
    rows = 0
    end = START_MS + days * DAY_MS
    for sym in ids:
        folder = root / "binance" / "spot" / "monthly" / "klines" / sym / "1m"
        folder.mkdir(parents=True, exist_ok=True)
        price = 100.0 * (1 + rng.random())
        for lo, hi in zip(
            month_starts(START_MS, days // 28 + 2)[:-1], month_starts(START_MS, days // 28 + 2)[1:], strict=True
        ):
            hi = min(hi, end)
            if hi <= lo:
                break
            t = np.arange(lo, hi, 60_000, dtype=np.int64)
            close = price * np.exp(np.cumsum(rng.normal(0, 5e-4, len(t))))
            open_ = np.concatenate([[price], close[:-1]])
            price = float(close[-1])
            spread = np.abs(rng.normal(0, 3e-4, len(t))) * close
            volume = np.round(rng.exponential(5.0, len(t)), 4)
            table = pa.table(
                {
                    "open_time": t,
                    "open": np.round(open_, 6),
                    "high": np.round(np.maximum(open_, close) + spread, 6),
                    "low": np.round(np.minimum(open_, close) - spread, 6),
                    "close": np.round(close, 6),
                    "volume": volume,
                    "close_time": t + 59_999,
                    "quote_volume": np.round(volume * close, 4),
                    "count": rng.integers(1, 500, len(t)),
                    "taker_buy_volume": np.round(volume / 2, 4),
                    "taker_buy_quote_volume": np.round(volume * close / 2, 4),
                    "ignore": np.zeros(len(t), dtype=np.int64),
                }
            )
            stamp = datetime.fromtimestamp(lo / 1000, tz=UTC)
            pacsv.write_csv(table, folder / f"{sym}-1m-{stamp:%Y-%m}.csv", pacsv.WriteOptions(include_header=False))
            rows += len(t)
    return rows


def register(data_dir: Path, venue: str, symbols: list[str]) -> None:
    """The venues' markets in the registry, as a capture (or an online import: ccxt's markets) registers them;
    this machine reaches no exchange, so the file names' market ids resolve through it."""
    from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
    from fundarb_dagster.core.sources.markets import market_for

    registry = InstrumentRegistry.load(registry_path(data_dir))
    for symbol in symbols:
        registry.add_market(venue, market_for(symbol, symbol.split(":")[0].replace("/", "")))
    registry.save(registry_path(data_dir))


def start_up() -> float:
    """Seconds to import what an import needs (ccxt's exchange list checks --exchange): once per process, so the
    rates measure the import, not the interpreter's start."""
    started = time.perf_counter()
    import ccxt  # noqa: F401 - imported for its cost

    import fundarb_dagster.core.importer  # noqa: F401

    return time.perf_counter() - started


def import_venue(data_dir: Path, folder: Path, venue: str) -> tuple[int, float, int, list[str]]:
    from fundarb_dagster.core.importer import import_files, symbol_from_name

    started, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
    summary = import_files(
        [folder],
        data_dir,
        exchange=venue,
        symbol=None,
        progress=None,
        symbol_of=symbol_from_name(venue, data_dir, lambda market_id, kind: None),
    )
    seconds = time.perf_counter() - started
    CPU_SECONDS.append(time.process_time() - cpu)  # the import's own work, whatever else runs on the cores
    MAIN_SECONDS.append(time.thread_time() - main)
    assert summary.ok, [f.error for f in summary.files if f.error][:3]
    return summary.landed, seconds, len(summary.landing_files), summary.landing_files


def physical_floor(folder: Path, landed: list[str]) -> tuple[int, float, float, float]:
    """What the import cannot go below on these cores: (rows, seconds) of pyarrow's multithreaded CSV reader
    parsing the folder's CSV bytes (in memory, headers off, in runs of 256 MB, converting the columns the import
    converts to the same types: `parsers.joined_convert_options`), and the
    seconds of writing the import's day files again from memory (`landing.write_parquet_atomic`, not durable,
    on the import's 4 threads: the Parquet writer's own cost per file and row), and the CPU seconds of both."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from fundarb_dagster.core import landing
    from fundarb_dagster.core.sources.replay.formats import _COLUMNS as COLUMNS
    from fundarb_dagster.core.sources.replay.parsers import joined_convert_options

    runs, run, size = [], [], 0
    for path in sorted(folder.rglob("*.csv")):
        body = path.read_bytes()
        run.append(body.partition(b"\n")[2] if body[:1].isalpha() else body)
        size += len(run[-1])
        if size >= 256 << 20:
            runs.append(b"".join(run))
            run, size = [], 0
    runs += [b"".join(run)] if run else []
    width = runs[0].partition(b"\n")[0].count(b",") + 1
    kind = "klines" if width == len(COLUMNS["klines"]) else "fundingRate"
    names = list(COLUMNS[kind])
    options = pacsv.ReadOptions(column_names=names)
    convert = joined_convert_options(names, kind)  # the columns and types the import's own read converts
    rows, started, cpu = 0, time.perf_counter(), time.process_time()
    for buffer in runs:
        rows += pacsv.read_csv(pa.py_buffer(buffer), read_options=options, convert_options=convert).num_rows
    read_s, read_cpu = time.perf_counter() - started, time.process_time() - cpu
    del runs
    tables = [pq.read_table(p) for p in landed]
    scratch = Path(tempfile.mkdtemp(prefix="bench_history-floor-"))
    stream = Path(landed[0]).parent.parent.name  # .../landing/<stream>/date=.../<writer>.parquet
    plain, codec = stream in landing.PLAIN_FLOAT_STREAMS, landing.DAY_FILE_COMPRESSION.get(stream, "zstd")
    started, cpu = time.perf_counter(), time.process_time()

    def write(item: tuple[int, pa.Table]) -> None:  # as write_days writes them
        path = scratch / f"{item[0]}.parquet"
        landing.write_parquet_atomic(item[1], path, codec, durable=False, plain_floats=plain)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, enumerate(tables)))
    write_s, write_cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(scratch, ignore_errors=True)
    return rows, read_s, write_s, read_cpu + write_cpu


def print_floor(what: str, folder: Path, landed: list[str], rows: int, seconds: float) -> None:
    csv_rows, read_s, write_s, cpu = physical_floor(folder, landed)
    floor = csv_rows / (read_s + write_s)
    print(
        f"  floor for {what} on these cores (load {os.getloadavg()[0]:.1f}): pyarrow read_csv of the same bytes "
        f"{read_s:.1f} s ({csv_rows / read_s / 1e6:.2f} M rows/s), Parquet writes of the same {len(landed):,} day "
        f"files {write_s:.1f} s ({csv_rows / write_s / 1e6:.2f} M rows/s); both {floor / 1e6:.2f} M rows/s; "
        f"the import {rows / seconds / 1e6:.2f} M rows/s = {rows / seconds / floor:.0%} of it; CPU: the floor's "
        f"{cpu:.1f} s, the import's {CPU_SECONDS[-1]:.1f} s ({CPU_SECONDS[-1] / cpu:.2f}x); "
        f"{idle_cores(rows, CPU_SECONDS[-1], seconds, MAIN_SECONDS[-1])}; "
        f"the floor's {csv_rows / (cpu / CORES) / 1e6:.2f} M rows/s"
    )


CORES = 2


def idle_cores(rows: int, cpu: float, wall: float, main: float) -> str:
    """What the CPU figures give on idle cores: the wall time if the CPU seconds were spread over `CORES` cores and
    nothing else ran, bounded below by the calling thread's own CPU (parsing, per file: a second core does not
    shorten it); the import's own share of the cores is its CPU over its wall time."""
    best = max(cpu / CORES, main)
    return (
        f"the import on {CORES} idle cores (its CPU / {CORES}, not below its main thread's {main:.1f} s) "
        f"{rows / best / 1e6:.2f} M rows/s, cores it got here {cpu / wall:.2f}"
    )


def hour_files_alternative(folder: Path, venue: str, sample: int, scratch: Path) -> tuple[int, int, float]:
    """The same parser, each symbol's rows landed as capture-style hour files (one per hour touched, as the
    importer wrote before): (rows, files, seconds) for the first `sample` symbols."""
    from fundarb_dagster.core import landing, schema
    from fundarb_dagster.core.sources.replay import parse_file

    names = {i: (venue, f"S{i}/USDT:USDT") for i in range(sample)}
    rows = files = 0
    started = time.perf_counter()
    for i, sym_dir in enumerate(sorted(folder.glob("futures/um/monthly/fundingRate/*"))[:sample]):
        for path in sorted(sym_dir.glob("*.csv")):
            records = next(iter(parse_file(path).parts.values()))
            records["instrument_id"] = i
            written = landing.write_stream(scratch, "funding", schema.to_arrow("funding", records, names), f"alt{i}", 0)
            rows, files = rows + len(records), files + len(written)
    return rows, files, time.perf_counter() - started


def pandas_alternative(folder: Path, sample: int, scratch: Path) -> tuple[int, int, float]:
    """The obvious alternative to the importer: pandas, file by file (`read_csv` of each archive of the first
    `sample` symbols, no validation), then one Parquet file per day of their rows: (rows, files, seconds)."""
    import pandas as pd

    started = time.perf_counter()
    frames = []
    for sym_dir in sorted(p for p in folder.rglob("*") if p.is_dir() and any(p.glob("*.csv")))[:sample]:
        for path in sorted(sym_dir.glob("*.csv")):
            first = path.open().readline()
            frame = pd.read_csv(path, header=0 if first[:1].isalpha() else None)
            frames.append(frame.set_axis([f"c{i}" for i in range(frame.shape[1])], axis=1).assign(file=path.stem))
    rows = pd.concat(frames, ignore_index=True).sort_values("c0", kind="stable")
    files = 0
    for day, part in rows.groupby(rows["c0"] // DAY_MS):
        target = scratch / f"date={day}" / "part.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(target, index=False)
        files += 1
    return len(rows), files, time.perf_counter() - started


def goals(quick: bool) -> tuple[list, str]:
    """The import goals for `python -m benchmarks` (materializing is `python -m benchmarks.bench_history`: its
    runs take minutes each on the shared machines): funding and klines rows/s, day files, idempotence."""
    from benchmarks.harness import Goal

    symbols, months, kline_symbols, kline_days = (4, 3, 2, 14) if quick else (100, 48, 20, 365)
    start_up()  # the modules, once per process: not in the rates
    work = Path(tempfile.mkdtemp(prefix="bench_history-"))
    try:
        archives, data = work / "archives", work / "data"
        bases = [f"C{i:03d}" for i in range(symbols)]
        funding_rows = 0
        for v, venue in enumerate(VENUES):
            ids = [f"{b}USDT" for b in bases]
            funding_rows += write_funding(archives, venue, ids, 1 if venue == "hyperliquid" else 8, months, seed=v)
            register(data, venue, [f"{b}/USDT:USDT" for b in bases])
        kline_rows = write_klines(archives, [f"K{i:02d}USDT" for i in range(kline_symbols)], kline_days, seed=9)
        register(data, "binance", [f"K{i:02d}/USDT" for i in range(kline_symbols)])
        funded = [import_venue(data, archives / venue / "futures", venue) for venue in VENUES]
        f_rows, f_s, f_files = (sum(x[i] for x in funded) for i in range(3))
        k_rows, k_s, k_files, _ = import_venue(data, archives / "binance" / "spot", "binance")
        again = import_venue(data, archives / "binance" / "spot", "binance")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = (
        f"funding {len(VENUES)} venues x {symbols} symbols x {months} months = {funding_rows:,} rows: "
        f"{f_rows:,} landed in {f_s:.1f} s, {f_files:,} day files; klines {kline_symbols} x {kline_days} days of 1m = "
        f"{kline_rows:,} rows: {k_rows:,} in {k_s:.1f} s, {k_files:,} day files; "
        f"again: {again[0]} rows, {again[2]} files"
    )
    return [
        Goal("history_import_funding", f"{f_rows / f_s / 1e6:.2f} M rows/s", ">= 1 M rows/s", f_rows / f_s >= 1e6),
        Goal("history_import_klines", f"{k_rows / k_s / 1e6:.2f} M rows/s", ">= 2 M rows/s", k_rows / k_s >= 2e6),
        Goal(
            "history_files_per_venue_day",
            f"{f_files / len(VENUES) / (months * 30.4):.2f}",
            "<= 1 per stream, venue and day",
            f_files <= len(VENUES) * months * 31,
        ),
        Goal("history_reimport", f"{again[0]} rows", "0 rows, 0 files (idempotent)", again[0] == 0 and again[2] == 0),
    ], report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 venues x 4 symbols x 3 months, 2 x 14 days of klines")
    parser.add_argument("--funding-symbols", type=int, default=100, help="symbols per venue (3 venues)")
    parser.add_argument("--years", type=float, default=4.0, help="years of funding")
    parser.add_argument("--kline-symbols", type=int, default=20)
    parser.add_argument("--kline-days", type=int, default=365)
    parser.add_argument("--sample", type=int, default=5, help="symbols landed as hour files (0: none)")
    parser.add_argument(
        "--pandas-sample", type=int, default=20, help="symbols read by pandas, file by file (0: none, klines too)"
    )
    parser.add_argument("--no-materialize", action="store_true", help="import only")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip pyarrow's read/write floor")
    parser.add_argument("--history-only", action="store_true", help="materialize history_job's days only")
    parser.add_argument("--materialize-days", type=int, default=0, help="materialize the first N days (0: all)")
    parser.add_argument("--keep", help="keep the data folder here (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.funding_symbols, args.years, args.kline_symbols, args.kline_days, args.sample = 4, 0.25, 2, 14, 2
        args.pandas_sample = 4
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_history-"))
    try:
        run(args, work)
    finally:
        if not args.keep:  # a full-size run leaves ~2 GB of archives and landing files
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    months = max(1, round(args.years * 12))
    archives, data = work / "archives", work / "data"
    shutil.rmtree(data, ignore_errors=True)
    print(f"2 cores shared; load average {os.getloadavg()[0]:.1f} at start; folder {work}")
    print(
        f"start-up of a `fundarb import` (its modules: the importer, pandas, pyarrow, ccxt): {start_up():.1f} s, "
        "paid once per command, not in the rates below"
    )
    bases = [f"C{i:03d}" for i in range(args.funding_symbols)]
    started = time.perf_counter()
    funding_rows = 0
    for v, venue in enumerate(VENUES):
        ids = [f"{b}USDT" for b in bases]
        funding_rows += write_funding(archives, venue, ids, 1 if venue == "hyperliquid" else 8, months, seed=v)
        register(data, venue, [f"{b}/USDT:USDT" for b in bases])
    kline_ids = [f"K{i:02d}USDT" for i in range(args.kline_symbols)]
    kline_rows = write_klines(archives, kline_ids, args.kline_days, seed=9)
    register(data, "binance", [f"K{i:02d}/USDT" for i in range(args.kline_symbols)])
    size_mb = sum(p.stat().st_size for p in archives.rglob("*.csv")) / 1e6
    print(
        f"generated in {time.perf_counter() - started:.0f} s: funding {len(VENUES)} venues x {args.funding_symbols} "
        f"symbols x {months} months (binance, bybit 8h; hyperliquid 1h) = {funding_rows:,} rows; klines "
        f"{args.kline_symbols} symbols x {args.kline_days} days of 1m = {kline_rows:,} rows; {size_mb:,.0f} MB of CSV"
    )

    landed = seconds = files = 0
    for venue in VENUES:
        n, s, f, written = import_venue(data, archives / venue / "futures", venue)
        landed, seconds, files = landed + n, seconds + s, files + f
        print(
            f"import funding {venue}: {n:,} rows in {s:.1f} s ({n / s / 1e6:.2f} M rows/s; "
            f"CPU {CPU_SECONDS[-1]:.1f} s), {f:,} day files"
        )
        if args.floor:
            print_floor(f"funding {venue}", archives / venue / "futures", written, n, s)
    funding_days = -(-months * 31 * DAY_MS // DAY_MS)
    print(
        f"import funding: {landed:,} rows in {seconds:.1f} s = {landed / seconds / 1e6:.2f} M rows/s "
        f"(target >= 1 M; CPU {sum(CPU_SECONDS):.1f} s, {landed / sum(CPU_SECONDS) / 1e6:.2f} M rows per CPU-second; "
        f"{idle_cores(landed, sum(CPU_SECONDS), seconds, sum(MAIN_SECONDS))}); "
        f"{files:,} landing files "
        f"(<= one per stream, venue and day: <= {len(VENUES) * funding_days:,})"
    )
    if args.sample:
        alt_rows, alt_files, alt_s = hour_files_alternative(
            archives / "hyperliquid", "hyperliquid", args.sample, work / "alt"
        )
        per_symbol = alt_s / args.sample
        print(
            f"alternative (hour files per symbol, as before), {args.sample} hourly symbols: {alt_rows:,} rows, "
            f"{alt_files:,} files in {alt_s:.1f} s = {alt_rows / alt_s / 1e6:.3f} M rows/s; extrapolated to the "
            f"{args.funding_symbols} hourly symbols alone: {alt_files // args.sample * args.funding_symbols:,} "
            f"files, {per_symbol * args.funding_symbols:.0f} s"
        )
        shutil.rmtree(work / "alt", ignore_errors=True)
    for venue in ("binance", "hyperliquid") if args.pandas_sample else ():  # 8-hourly (small files) and hourly
        alt_rows, alt_files, alt_s = pandas_alternative(archives / venue, args.pandas_sample, work / "alt")
        print(
            f"alternative (pandas read_csv file by file, no validation, a Parquet file per day), {venue}, "
            f"{args.pandas_sample} symbols: {alt_rows:,} rows, {alt_files:,} files in {alt_s:.1f} s = "
            f"{alt_rows / alt_s / 1e6:.3f} M rows/s"
        )
        shutil.rmtree(work / "alt", ignore_errors=True)
    shutil.rmtree(work / "alt", ignore_errors=True)
    n, s, f, written = import_venue(data, archives / "binance" / "spot", "binance")
    print(
        f"import klines: {n:,} rows in {s:.1f} s = {n / s / 1e6:.2f} M rows/s (target >= 2 M; "
        f"CPU {CPU_SECONDS[-1]:.1f} s, {n / CPU_SECONDS[-1] / 1e6:.2f} M rows per CPU-second; "
        f"{idle_cores(n, CPU_SECONDS[-1], s, MAIN_SECONDS[-1])}); {f:,} day files"
    )
    if args.floor:
        print_floor("klines", archives / "binance" / "spot", written, n, s)
    if args.pandas_sample:
        alt_rows, alt_files, alt_s = pandas_alternative(archives / "binance" / "spot", args.kline_symbols, work / "alt")
        print(
            f"alternative (pandas read_csv file by file, no validation, a Parquet file per day), {args.kline_symbols} "
            f"kline symbols: {alt_rows:,} rows, {alt_files:,} files in {alt_s:.1f} s = "
            f"{alt_rows / alt_s / 1e6:.3f} M rows/s"
        )
    shutil.rmtree(work / "alt", ignore_errors=True)
    again = time.perf_counter()
    n2, _, f2, _ = import_venue(data, archives / "binance" / "spot", "binance")
    print(f"import klines again: {n2:,} rows landed, {f2} files, {time.perf_counter() - again:.1f} s (idempotent)")
    if args.no_materialize:
        return

    from fundarb_dagster.backfill import DEFAULT_JOBS, backfill

    os.environ.pop("FUNDARB_PARTITIONS_START", None)
    spent, counts = time_dagster_events()
    last = [0.0, 0, 0.0, 0]  # event writes (s, count) and check evaluations (s, count) at the previous run's end

    def progress(line: str) -> None:  # after each run: its share of Dagster's event writes
        if line.startswith("backfill:"):
            print("  " + line, flush=True)
            return
        now = [sum(spent.values()), sum(counts.values()), spent[CHECKS], counts[CHECKS]]
        events_s, events, checks_s, checks = (a - b for a, b in zip(now, last, strict=True))
        last[:] = now
        print(
            f"  {line}; Dagster's event writes {events_s:.1f} s ({events:,} events, of which {checks:,} check "
            f"evaluations {checks_s:.1f} s); peak RSS so far {peak_rss_gb():.1f} GB; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )

    end = None
    if args.materialize_days:
        end = (datetime.fromtimestamp(START_MS / 1000, tz=UTC) + timedelta(days=args.materialize_days)).date()
    from fundarb_dagster.defs.history import HISTORY_RUN_MONTHS

    print(f"peak RSS after the import {peak_rss_gb():.1f} GB; history_job runs of up to {HISTORY_RUN_MONTHS} months")
    started = time.perf_counter()
    timings = backfill(data, end=end, jobs=() if args.history_only else DEFAULT_JOBS, progress=progress)
    wall = time.perf_counter() - started
    for job in ("history_job", "hourly_job", "signals_job"):
        mine = [t for t in timings if t.job == job]
        if mine:
            w, st = sum(t.wall_s for t in mine), sum(t.steps_s for t in mine)
            print(
                f"{job}: {len(mine)} runs, {w:.0f} s wall, steps {st:.0f} s, Dagster outside steps {w - st:.0f} s "
                f"({(w - st) / len(mine):.1f} s per run)"
            )
    print_step_shares(timings)
    writes, events = sum(spent.values()), sum(counts.values())
    print(
        f"materialized {end or 'all'} of {funding_rows:,} funding rows and {kline_rows:,} 1m bars through "
        f"funding_spreads and the bar tables in {wall:.0f} s ({wall / 60:.1f} min; target for the funding history "
        f"<= 10 min): Dagster's event writes {writes:.0f} s ({events:,} events), the rest (the work and Dagster's "
        f"planning) {wall - writes:.0f} s; peak RSS {peak_rss_gb():.1f} GB; load average {os.getloadavg()[0]:.1f} "
        "at the end"
    )
    if args.materialize_days:  # a part of the history: what the whole would take at this pace (linear in days)
        scale = months * 30.44 / args.materialize_days
        print(f"the whole {months} months at this pace: ~{wall * scale:.0f} s ({wall * scale / 60:.1f} min)")
    print(
        "Dagster's event writes by type: "
        + ", ".join(f"{kind} {counts[kind]:,} in {seconds:.1f} s" for kind, seconds in spent.most_common(6))
    )


def print_step_shares(timings: list) -> None:
    """Per history_job run: funding_intervals' time and share (it rebuilds the interval history from every
    settlement landed so far on each run, so later runs read more), and the run's longest steps (wall seconds from
    the instance's step stats: the load of the shared cores is in them)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        for timing in (t for t in timings if t.job == "history_job"):
            stats = instance.get_run_step_stats(timing.run_id)
            steps = sorted(
                ((s.step_key, (s.end_time or s.start_time) - s.start_time) for s in stats if s.start_time),
                key=lambda item: -item[1],
            )
            intervals = dict(steps).get("funding_intervals", 0.0)
            print(
                f"  {timing.window}: funding_intervals {intervals:.1f} s = {100 * intervals / timing.wall_s:.1f} % of "
                f"the run's {timing.wall_s:.1f} s ({100 * intervals / max(timing.steps_s, 1e-9):.1f} % of its steps); "
                "longest steps: " + ", ".join(f"{key} {sec:.1f} s" for key, sec in steps[:6])
            )


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (the runs are in process: `execute_in_process`)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def time_dagster_events() -> tuple[Counter[str], Counter[str]]:
    """Time every event a run records (`DagsterInstance.handle_new_event`: the write to the instance's event
    storage, the batch flushes, the listeners) by event type, for the rest of this process: Dagster's own
    per-partition cost beside the work. Measurement only: it wraps the method, changing nothing it does."""
    from dagster._core.instance.methods.event_methods import EventMethods

    spent: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    original = EventMethods.handle_new_event

    def timed(self, event, **kwargs):  # noqa: ANN001, ANN202 - Dagster's signature
        started = time.perf_counter()
        try:
            return original(self, event, **kwargs)
        finally:
            kind = event.dagster_event_type.value if event.dagster_event_type else "LOG"
            spent[kind] += time.perf_counter() - started
            counts[kind] += 1

    EventMethods.handle_new_event = timed
    return spent, counts


if __name__ == "__main__":
    main()
