"""The landing zone as the raw SQL reads it: the files of a window, bound as parameters, and the zero-row
file of each stream that keeps a never-captured stream's table well-typed.

Each run reads only its window's files (its `date=/hour=` folders' and its days' day files), listed and bound.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ...core import landing, schema
from ...core.sql import check_identifier, create_table, delete_window, load_sql, replace_window, table_exists
from ...core.tables import LANDED_TABLES
from ...core.units import DAY_MS, HOUR_MS
from ...core.window import Window
from ..resources import warehouse_connection

EMPTY_HIVE = ("date=1970-01-01", "hour=00")
# A window with no landed file of its stream: the step clears the window and reads nothing (its metadata says so).
NO_INPUT = "none: no landed file in the window"


def empty_stream_file(data_dir: Path, stream: str) -> Path:
    """A zero-row Parquet file of the stream's schema, in a hive-shaped path outside the landing zone.

    Always listed beside the landing glob: the query then binds the right columns even when the stream
    has no files yet, instead of DuckDB's "No files found".
    """
    path = Path(data_dir) / ".fundarb" / "empty" / stream / EMPTY_HIVE[0] / EMPTY_HIVE[1] / "empty.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-empty.{id(path)}")
        pq.write_table(schema.arrow_schema(stream).empty_table(), tmp)
        tmp.replace(path)
    return path


def window_files(data_dir: Path, stream: str, window: Window) -> list[Path]:
    """The landed files of a stream that may hold rows of a window (what the raw SQL reads, the sensor digests
    and the metadata counts): the window's hour folders' files, then the day files of its days (imports). One
    listing per day folder of the window, not a look-up per hour (a year of history is 8,760 hours)."""
    if not (landing.landing_root(data_dir) / stream).is_dir():
        return []
    hour_files: list[Path] = []
    day_files: list[Path] = []
    for day_ms in range(window.start_ms // DAY_MS * DAY_MS, window.end_ms, DAY_MS):
        folder = landing.day_dir(data_dir, stream, day_ms)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        hours = []
        for entry in entries:
            if entry.name.startswith("hour=") and entry.name[5:].isdigit() and entry.is_dir():
                hour_ms = day_ms + int(entry.name[5:]) * HOUR_MS
                if window.start_ms <= hour_ms < window.end_ms:
                    hours.append((hour_ms, Path(entry.path)))
        for _, hour_folder in sorted(hours):
            hour_files.extend(sorted(hour_folder.glob("*.parquet")))
        day_files.extend(sorted(Path(e.path) for e in entries if landing.is_day_file(e)))
    return hour_files + day_files


def landing_params(data_dir: Path, stream: str, window: Window) -> tuple[dict[str, Any], int]:
    """The bound parameters of a landed table's SQL, and how many landed files the window holds.

    `$files` lists the files themselves (listing stays proportional to the window, not to the history), plus
    the stream's zero-row file so a window with no files still binds the columns. The raw SQL filters on
    `ts_ms` (a day file holds every hour of its day); `$start_date`.. `$end_hour` remain for SQL that also
    filters on the hive keys of hour folders (the execution streams, never imported).
    """
    files = window_files(data_dir, stream, window)
    sources = [str(f) for f in files]
    sources.append(str(empty_stream_file(data_dir, stream)))
    last_hour = window.end_ms - HOUR_MS
    params = window.params(
        files=sources,
        start_date=_date(window.start_ms),
        end_date=_date(last_hour),
        start_hour=_hour_key(window.start_ms),
        end_hour=_hour_key(window.end_ms),
    )
    return params, len(files)


def hour_folders(data_dir: Path, streams: Iterable[str]) -> Iterator[tuple[int, Path, float]]:
    """(hour start ms, folder, mtime) of every hour with landed files of the streams (a listing, no reads):
    each `date=/hour=` folder, and every hour of a day that has day files (the `date=` folder stands for
    them: its digest covers only the day files in it)."""
    root = landing.landing_root(data_dir)
    for stream in streams:
        base = root / stream
        if not base.is_dir():
            continue
        for day in base.glob("date=*"):
            try:
                day_start = datetime.strptime(day.name[5:], "%Y-%m-%d").replace(tzinfo=UTC)
                entries = list(os.scandir(day))
            except (ValueError, FileNotFoundError):
                continue  # not a partition folder, or removed while listing
            day_ms = int(day_start.timestamp() * 1000)
            if any(e.name.endswith(".parquet") and not e.name.startswith(".") for e in entries):
                try:
                    day_mtime = day.stat().st_mtime
                except FileNotFoundError:
                    continue
                for hour in range(24):
                    yield day_ms + hour * HOUR_MS, day, day_mtime
            for entry in entries:
                if not entry.name.startswith("hour=") or not entry.is_dir():
                    continue
                try:
                    yield day_ms + int(entry.name[5:]) * HOUR_MS, Path(entry.path), entry.stat().st_mtime
                except (ValueError, FileNotFoundError):
                    continue


def ensure_raw_tables(conn: Any, data_dir: Path, *names: str) -> None:
    """Create empty landed tables (raw, execution) with their real columns where no run has made them yet (a
    stream never landed). Downstream assets call this for every landed table they read, so a missing stream
    reads as no rows.
    """
    for name in names:
        if table_exists(conn, name):
            continue
        spec = LANDED_TABLES[name]
        params, _ = landing_params(data_dir, spec.stream, Window(datetime(1970, 1, 1), datetime(1970, 1, 1, 1)))
        params["files"] = [str(empty_stream_file(data_dir, spec.stream))]
        sql = load_sql(spec.domain, name)
        create_table(conn, f"CREATE TABLE IF NOT EXISTS {check_identifier(name)} AS {sql}", params)


def load_landed_window(duckdb: Any, data_dir: Path, table: str, window: Window) -> dict[str, Any]:
    """Replace one window of a table loaded from the landing zone (raw, execution); returns run metadata."""
    spec = LANDED_TABLES[table]
    params, n_files = landing_params(data_dir, spec.stream, window)
    with warehouse_connection(duckdb) as conn:
        if not n_files:  # nothing landed in the window (most streams of imported history): clear it, read nothing
            ensure_raw_tables(conn, data_dir, table)
            delete_window(conn, table, window.start, window.end)
            return {"window": str(window), "hours": window.hours, "files": 0, "rows": 0, "input": NO_INPUT}
        rows = replace_window(conn, table, load_sql(spec.domain, table), params)
    return {"window": str(window), "hours": window.hours, "files": n_files, "rows": rows, "input": "landed files"}


def _date(ms: int) -> str:
    return f"{_utc(ms):%Y-%m-%d}"


def _hour_key(ms: int) -> str:
    return f"{_utc(ms):%Y-%m-%d %H}"


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
