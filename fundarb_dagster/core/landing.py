"""The landing zone: hive-partitioned Parquet files, written atomically.

Layout: `<data_dir>/landing/<stream>/date=YYYY-MM-DD/hour=HH/<writer>-<seq>.parquet`, partitioned by the
event time (`ts_ms`) of the rows. History (`fundarb import`) lands as day files instead:
`<data_dir>/landing/<stream>/date=YYYY-MM-DD/<writer>.parquet`, one per import and day, sorted by `ts_ms`
(a day of hourly funding is one file, not 24; years of history are thousands of files, not millions).
A file is written under a temporary name that starts with a dot (so
readers' `*.parquet` globs never see it), fsynced, then renamed into place, then the directory is fsynced:
a crash at any moment leaves either no file or a whole one. A write that fails removes its temporary, so
a full disk leaves nothing behind either.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema
from .units import DAY_MS, HOUR_MS

TMP_PREFIX = ".tmp-"
WRITE_THREADS = 4  # day files written at once by write_days (and an import's rounds)
# Streams whose day files (`write_days`) write floats plain, not dictionary-encoded (see `_encodings`), measured on
# real data: 1m bars (binance_xrp's XRP/ETH, a day of 20 x 1,440) dictionary 4.0 ms and 208 kB a day file, plain
# 2.1 ms and 90 kB; settled funding (funding_2025_2026, 180 venue-days of ~230 rows) 0.85 ms and 4.4 kB, plain
# 0.71 ms and 4.1 kB.
PLAIN_FLOAT_STREAMS = frozenset({"ohlcv", "funding"})
# Day files of these streams are compressed with LZ4 (Parquet's LZ4_RAW), not zstd: zstd's cost per column chunk
# dominates a day file's write. Measured 2026-12-07 (pyarrow 26, the day files' encodings, 100 writes each): a day
# of 100 hourly funding symbols (2,400 rows) zstd 1.11-1.19 ms and 22.7 kB, LZ4 0.54-0.66 ms and 25.0 kB; a day of
# 20 symbols' 1m bars (28,800 rows) zstd 9.3-11.1 ms and 1.27 MB, LZ4 6.2-6.4 ms and 1.51 MB.
DAY_FILE_COMPRESSION = {"ohlcv": "lz4", "funding": "lz4"}


def landing_root(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "landing"


def hour_start_ms(ts_ms: int) -> int:
    return (int(ts_ms) // HOUR_MS) * HOUR_MS


def partition_dir(data_dir: str | os.PathLike[str], stream: str, hour_ms: int) -> Path:
    """The folder of one stream's hour: .../<stream>/date=YYYY-MM-DD/hour=HH."""
    t = datetime.fromtimestamp(hour_ms / 1000, tz=UTC)
    return landing_root(data_dir) / stream / f"date={t:%Y-%m-%d}" / f"hour={t:%H}"


def partition_key(hour_ms: int) -> str:
    """The Dagster hourly partition key of an hour (`YYYY-MM-DD-HH:00`)."""
    t = datetime.fromtimestamp(hour_ms / 1000, tz=UTC)
    return f"{t:%Y-%m-%d-%H}:00"


def split_by_hour(ts_ms: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (hour_start_ms, row indices) for each event-time hour present, in time order."""
    if len(ts_ms) == 0:
        return
    hours = ts_ms // HOUR_MS
    first = int(hours.min())
    if first == int(hours.max()):
        # One hour, the usual case of a flush: the same rows without sorting (~10 ms per million rows saved).
        yield first * HOUR_MS, np.arange(len(hours))
        return
    order = np.argsort(hours, kind="stable")
    sorted_hours = hours[order]
    bounds = np.flatnonzero(np.diff(sorted_hours)) + 1
    for chunk in np.split(order, bounds):
        yield int(hours[chunk[0]]) * HOUR_MS, chunk


def file_name(writer: str, seq: int) -> str:
    """`<writer>-<seq:08d>.parquet`: the name of a writer's `seq`-th file in a partition folder."""
    return f"{writer}-{seq:08d}.parquet"


def write_parquet_atomic(
    table: pa.Table, path: Path, compression: str = "zstd", *, durable: bool = True, plain_floats: bool = False
) -> Path:
    """Write a table to `path` so that `path` is either absent or complete, never partial.

    Refuses to overwrite: every writer names its files uniquely, so an existing name is a bug. `durable=False`
    leaves the fsyncs to the caller, who syncs once for many files (an import: `os.sync()` before its
    manifest records them; its journal removes them if it never got there). `plain_floats`: floats without a
    dictionary (`PLAIN_FLOAT_STREAMS`).
    """
    if path.exists():
        raise FileExistsError(f"landing file already exists, refusing to overwrite: {path}")
    options = _encodings_of(table.schema, plain_floats)
    write = lambda handle: pq.write_table(table, handle, compression=compression, **options)  # noqa: E731
    return write_atomic(path, write) if durable else write_atomic(path, write, durable=False)


def write_atomic(path: Path, write: Callable[[BinaryIO], object], *, durable: bool = True) -> Path:
    """`write(handle)` into a temporary beside `path`, fsync, rename into place, fsync the folder.

    When the write fails (a full disk, an I/O error) the temporary is removed before the error propagates;
    if the failure comes after the rename (the folder's fsync), `path` exists and is whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def _remove_quietly(path: Path) -> None:
    """Best effort: the error that made us clean up is the one worth reporting."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


@functools.lru_cache(maxsize=64)
def _encodings_of(schema: pa.Schema, plain_floats: bool) -> dict[str, object]:
    """`_encodings` once per schema: an import writes thousands of day files of one schema."""
    return _encodings(schema, plain_floats=plain_floats)


def _encodings(schema: pa.Schema, *, plain_floats: bool = False) -> dict[str, object]:
    """Parquet encodings by column type: faster to write than pyarrow's defaults, and smaller.

    pyarrow dictionary-encodes every column by default: for timestamps and sequential ids that means hashing
    every value only to give up on a dictionary that overflows, so int64 columns (timestamps, ids, counters)
    are delta-encoded instead, which shrinks sorted and near-sorted values to a few bits before zstd.
    Strings and narrow integers (venue names, instrument ids, flags, codes) keep a dictionary, and so do
    floats: market prices and sizes sit on a tick or lot grid and repeat, so zstd packs the dictionary's
    indices faster than the doubles (1 M trades: price 23 vs 35 ms, amount 17 vs 39 ms, and smaller files);
    a column of all-distinct doubles costs ~11 ms per million values more than plain (the writer falls back
    to plain once the dictionary overflows). Imported bars and funding are the exception (`plain_floats`,
    `PLAIN_FLOAT_STREAMS`): their day files write faster and smaller plain. The Arrow schema is not stored in
    the file: every landed type round-trips through Parquet's own logical types, and dictionary-typed string
    columns (`schema.to_arrow(..., dictionary_strings=True)`) then read back as the plain strings of the
    stream's schema.

    Column statistics (min/max, nulls) are written for what queries select rows by (times, ids, venue and
    symbol names), not for floats: no query selects rows by a price or a rate, and the writer's CPU for 1 M
    trades falls by ~7 % without them (measured 2026-12-07).
    """
    dictionary, delta, stats = [], {}, []
    for field in schema:
        kind = field.type
        if not pa.types.is_floating(kind):
            stats.append(field.name)
        if (
            pa.types.is_dictionary(kind)
            or pa.types.is_string(kind)
            or (pa.types.is_integer(kind) and kind.bit_width < 64)
            or (pa.types.is_floating(kind) and not plain_floats)
        ):
            dictionary.append(field.name)
        elif pa.types.is_int64(kind):
            delta[field.name] = "DELTA_BINARY_PACKED"
    return {"use_dictionary": dictionary, "column_encoding": delta, "write_statistics": stats, "store_schema": False}


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_stream(
    data_dir: str | os.PathLike[str],
    stream: str,
    table: pa.Table,
    writer: str,
    seq: int,
) -> list[Path]:
    """Write a table of one stream into its hour partitions, one file per hour touched.

    `writer` names the producer (e.g. `node0-rank1` or `import-<hash>`) and `seq` its running number, so
    names never collide across restarts when the writer picks a fresh `seq` (see `next_seq`).
    """
    ts = table.column("ts_ms").to_numpy()
    paths = []
    for hour_ms, rows in split_by_hour(ts):
        part = table.take(pa.array(rows)) if len(rows) != table.num_rows else table
        path = partition_dir(data_dir, stream, hour_ms) / file_name(writer, seq)
        paths.append(write_parquet_atomic(part, path))
    return paths


def day_dir(data_dir: str | os.PathLike[str], stream: str, day_ms: int) -> Path:
    """The folder of one stream's day: .../<stream>/date=YYYY-MM-DD (day files sit in it, hour folders below)."""
    return Path(_day_dirs(data_dir, stream, np.array([day_ms // DAY_MS]))[0])


def day_file_path(data_dir: str | os.PathLike[str], stream: str, day_ms: int, writer: str) -> Path:
    """Where `writer`'s file of one stream's day lands."""
    return day_file_paths(data_dir, stream, np.array([day_ms // DAY_MS]), writer)[0]


def day_file_paths(data_dir: str | os.PathLike[str], stream: str, days: np.ndarray, writer: str) -> list[Path]:
    """`day_file_path` of many days (epoch days) at once: the dates formatted by numpy, one string per file (an
    import of years writes thousands; a Path and a datetime built per day cost more than writing some)."""
    return [Path(f"{folder}/{writer}.parquet") for folder in _day_dirs(data_dir, stream, days)]


def _day_dirs(data_dir: str | os.PathLike[str], stream: str, days: np.ndarray) -> list[str]:
    """The `date=YYYY-MM-DD` folders of epoch days: the one place the day folders' format is spelled."""
    root = str(landing_root(data_dir) / stream)
    dates = np.datetime_as_string(np.asarray(days, dtype="datetime64[D]"), unit="D").tolist()
    return [f"{root}/date={date}" for date in dates]


def day_files(folder: Path) -> list[Path]:
    """The day files directly in a `date=` folder (not the hour folders' files), sorted."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return sorted(Path(e.path) for e in entries if is_day_file(e))


def is_day_file(entry: os.DirEntry) -> bool:
    """A day file directly in a `date=` folder: a landed Parquet file, not a temporary nor an hour folder."""
    return entry.name.endswith(".parquet") and not entry.name.startswith(".") and entry.is_file()


def newest_landed_hour_ms(data_dir: Path) -> int | None:
    """The start of the newest hour holding market data in the landing zone: the data's own clock. Lists
    the newest day folder of each market stream only, so it does not grow with history (a day with day
    files counts up to its last hour)."""
    root = landing_root(data_dir)
    newest = None
    for stream in schema.MARKET_STREAMS:
        days = sorted((root / stream).glob("date=*"), reverse=True)
        for day in days[:1]:
            hours = sorted(day.glob("hour=*"), reverse=True)
            candidates = [f"{day.name[5:]} {hour.name[5:]}" for hour in hours[:1]]
            if day_files(day):
                candidates.append(f"{day.name[5:]} 23")
            for text in candidates:
                try:
                    start = datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)
                except ValueError:
                    continue
                ms = int(start.timestamp() * 1000)
                newest = ms if newest is None else max(newest, ms)
    return newest


def split_by_day(ts_ms: np.ndarray) -> Iterator[tuple[int, slice]]:
    """(day start ms, slice) of each event-time day of ts_ms, which must be sorted."""
    if len(ts_ms) == 0:
        return
    days = ts_ms // DAY_MS
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(days)) + 1, [len(days)]])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        yield int(days[lo]) * DAY_MS, slice(lo, hi)


# Below this many rows per piece on average (a day of 8-hourly funding is 3 rows a symbol), a day is taken from the
# whole table sorted once, not assembled from its pieces (a slice costs ~10 µs, more than its rows).
MIN_PIECE_ROWS = 64


@dataclass(frozen=True)
class DaySplit:
    """A table's rows by event-time day: `days` (epoch days, ascending) and `table(i)`, day i's rows as one
    table sorted by `ts_ms` (stably: rows of the same time keep the table's order)."""

    days: np.ndarray
    table: Callable[[int], pa.Table]


def split_days(table: pa.Table, min_piece_rows: int = MIN_PIECE_ROWS) -> DaySplit:
    """The rows of each event-time day of a table whose record batches (an import's files) are each sorted by
    `ts_ms`, as most are (one that is not is sorted first, stably). A day whose rows come from a few long
    pieces (a year of 1m bars of 20 symbols: 20 pieces of 1,440 rows) is assembled from them, without copying
    or sorting the whole table; many short pieces (funding: thousands of files of 3-24 rows a day) are taken
    from the table made one and sorted once. Either way each day's rows and order are the same."""
    batches = [batch for batch in table.to_batches() if batch.num_rows]
    if not batches:
        return DaySplit(np.zeros(0, np.int64), lambda i: table.slice(0, 0))
    starts = np.cumsum([0] + [batch.num_rows for batch in batches])
    ts = np.concatenate([batch.column("ts_ms").to_numpy() for batch in batches])
    falling = np.flatnonzero(ts[1:] < ts[:-1]) + 1
    for i in np.unique(np.searchsorted(starts, falling[~np.isin(falling, starts)], side="right") - 1).tolist():
        lo, hi = int(starts[i]), int(starts[i + 1])
        order = np.argsort(ts[lo:hi], kind="stable")
        batches[i], ts[lo:hi] = batches[i].take(pa.array(order)), ts[lo:hi][order]
    days = ts // DAY_MS
    cut = np.zeros(len(ts), dtype=bool)
    cut[starts[:-1]] = True
    cut[1:] |= days[1:] != days[:-1]
    seg_lo = np.flatnonzero(cut)
    if len(seg_lo) * min_piece_rows > len(ts):
        return _split_sorted(pa.Table.from_batches(batches, schema=table.schema), ts, days)
    seg_batch = np.searchsorted(starts, seg_lo, side="right") - 1
    order = np.argsort(days[seg_lo], kind="stable")  # each day's pieces in table order
    unique_days, first = np.unique(days[seg_lo][order], return_index=True)
    bounds = np.append(first, len(order)).tolist()
    at, lo = seg_batch[order].tolist(), (seg_lo - starts[seg_batch])[order].tolist()
    size = (np.append(seg_lo[1:], len(ts)) - seg_lo)[order].tolist()

    def day(i: int) -> pa.Table:
        pieces = [batches[at[s]].slice(lo[s], size[s]) for s in range(bounds[i], bounds[i + 1])]
        return _sorted_by_time(pa.Table.from_batches(pieces, schema=table.schema))

    return DaySplit(unique_days.astype(np.int64), day)


def _split_sorted(table: pa.Table, ts: np.ndarray, days: np.ndarray) -> DaySplit:
    """Each day's rows a slice of the table sorted once by time: one take of the whole table (made one chunk
    first), not one per day (a day of 8-hourly funding is a few hundred rows: a take's own cost is more)."""
    if not bool(np.all(ts[1:] >= ts[:-1])):
        order = np.argsort(ts, kind="stable")
        table, days = table.combine_chunks().take(pa.array(order)), days[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(days)) + 1, [len(days)]]).tolist()

    def day(i: int) -> pa.Table:
        lo, hi = bounds[i], bounds[i + 1]
        return table.slice(lo, hi - lo)

    return DaySplit(days[bounds[:-1]].astype(np.int64), day)


def _sorted_by_time(table: pa.Table) -> pa.Table:
    ts = table.column("ts_ms").to_numpy()
    if bool(np.all(ts[1:] >= ts[:-1])):
        return table
    return table.take(pa.array(np.argsort(ts, kind="stable")))


def write_days(
    data_dir: str | os.PathLike[str], stream: str, table: pa.Table, writer: str, split: DaySplit | None = None
) -> list[Path]:
    """Write a table of one stream as day files, one per event-time day, each sorted by `ts_ms`.

    `writer` must be unique to this write (an import names it after its files' digests): a day file that
    exists already is refused, as every landing file is. Each file is atomic (temporary, rename) but not
    fsynced: the caller syncs once for all of them (`os.sync()`) before recording them anywhere. `split`: the
    table's `split_days`, when the caller made it already (an import lists the files in its journal first).
    Each day's table is made (`DaySplit.table`: its rows taken or assembled) in its writer thread.
    """
    if table.num_rows == 0:
        return []
    split = split if split is not None else split_days(table)
    # The Parquet writer and the takes release the GIL: the days of a long import are written on every core.
    with ThreadPoolExecutor(max_workers=min(len(split.days), os.cpu_count() or 1, WRITE_THREADS)) as pool:
        return [future.result() for _, future in submit_days(pool, data_dir, stream, split, writer)]


def submit_days(
    pool: Executor,
    data_dir: str | os.PathLike[str],
    stream: str,
    split: DaySplit,
    writer: str,
) -> list[tuple[Path, Future[Path]]]:
    """Hand the writes of a split's days to `pool`, as `write_days` writes them: (path, its write) per day, in
    day order. The caller waits for the writes; an import does while it parses its next files
    (`import_landing.DayLanding`)."""
    paths = day_file_paths(data_dir, stream, split.days, writer)
    for folder in {path.parent for path in paths}:
        folder.mkdir(parents=True, exist_ok=True)
    plain, codec = stream in PLAIN_FLOAT_STREAMS, DAY_FILE_COMPRESSION.get(stream, "zstd")

    def write(i: int, path: Path) -> Path:
        return write_parquet_atomic(split.table(i), path, codec, durable=False, plain_floats=plain)

    return [(path, pool.submit(write, i, path)) for i, path in enumerate(paths)]


def next_seq(data_dir: str | os.PathLike[str], writer: str) -> int:
    """The first sequence number greater than any file this writer already left in the landing zone."""
    highest = -1
    root = landing_root(data_dir)
    if root.exists():
        for path in root.glob(f"*/date=*/hour=*/{writer}-*.parquet"):
            try:
                highest = max(highest, int(path.stem.rsplit("-", 1)[1]))
            except ValueError:
                continue
    return highest + 1


def remove_stale_temporaries(data_dir: str | os.PathLike[str], writer: str) -> int:
    """Delete the temporary files this writer left behind when it crashed; returns how many were removed.

    Only `writer`'s own: another writer (an import beside a capture, another node on a shared landing
    zone) may be between its write and its rename right now, and deleting its file would fail that rename.
    """
    root = landing_root(data_dir)
    removed = 0
    if root.exists():
        for path in root.glob(f"*/date=*/hour=*/{TMP_PREFIX}{writer}-*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def stream_glob(data_dir: str | os.PathLike[str], stream: str) -> str:
    """The glob DuckDB's `read_parquet(..., hive_partitioning = true)` reads for a stream."""
    return str(landing_root(data_dir) / stream / "date=*" / "hour=*" / "*.parquet")


def stream_files(data_dir: str | os.PathLike[str], stream: str) -> list[str]:
    """Every landed file of a stream: the hour folders' (captures) and the day files (imports), sorted."""
    base = landing_root(data_dir) / stream
    hours = base.glob("date=*/hour=*/*.parquet")
    days = base.glob("date=*/*.parquet")
    return sorted(str(p) for p in (*hours, *days) if not p.name.startswith("."))
