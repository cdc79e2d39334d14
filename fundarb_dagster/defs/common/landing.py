"""The landing zone as the raw SQL reads it: the files of a window, bound as parameters, and the zero-row
file of each stream that keeps a never-captured stream's table well-typed.

Each run reads only its window's `date=/hour=` folders through DuckDB's hive-partitioned Parquet reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ...core import landing, schema
from ...core.sql import check_identifier, execute, load_sql, replace_window, table_exists
from ...core.tables import LANDED_TABLES
from ...core.units import HOUR_MS
from ..partitions import Window
from ..resources import warehouse_connection

EMPTY_HIVE = ("date=1970-01-01", "hour=00")


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
    """The landed files of a stream inside a window (what the sensor digests and the metadata counts)."""
    files: list[Path] = []
    for hour_ms in range(window.start_ms, window.end_ms, HOUR_MS):
        folder = landing.partition_dir(data_dir, stream, hour_ms)
        if folder.is_dir():
            files.extend(sorted(folder.glob("*.parquet")))
    return files


def landing_params(data_dir: Path, stream: str, window: Window) -> tuple[dict[str, Any], int]:
    """The bound parameters of a raw SQL file, and how many landed files the window holds."""
    files = window_files(data_dir, stream, window)
    # One glob per day that has files in the window (not the whole stream): listing stays proportional to
    # the window, not to the history; DuckDB's hive filter then prunes the hours inside those days. Each
    # glob matches at least one file (DuckDB rejects a glob matching none).
    root = landing.landing_root(data_dir) / stream
    days = sorted({f.parent.parent.name for f in files})
    sources = [str(root / day / "hour=*" / "*.parquet") for day in days]
    sources.append(str(empty_stream_file(data_dir, stream)))
    n_files = len(files)
    last_hour = window.end_ms - HOUR_MS
    params = window.params(
        files=sources,
        start_date=_date(window.start_ms),
        end_date=_date(last_hour),
        start_hour=_hour_key(window.start_ms),
        end_hour=_hour_key(window.end_ms),
    )
    return params, n_files


def hour_folders(data_dir: Path, streams: Iterable[str]) -> Iterator[tuple[int, Path, float]]:
    """(hour start ms, folder, mtime) of every `date=/hour=` folder of the streams (a listing, no reads)."""
    root = landing.landing_root(data_dir)
    for stream in streams:
        base = root / stream
        if not base.is_dir():
            continue
        for day in base.glob("date=*"):
            for hour in day.glob("hour=*"):
                try:
                    start = datetime.strptime(f"{day.name[5:]} {hour.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
                    mtime = hour.stat().st_mtime
                except (ValueError, FileNotFoundError):
                    continue  # not a partition folder, or removed while listing
                yield int(start.timestamp() * 1000), hour, mtime


def newest_landed_hour_ms(data_dir: Path) -> int | None:
    """The start of the newest hour holding market data in the landing zone: the data's own clock. Lists
    the newest day folder of each market stream only, so it does not grow with history."""
    root = landing.landing_root(data_dir)
    newest = None
    for stream in schema.MARKET_STREAMS:
        days = sorted((root / stream).glob("date=*"), reverse=True)
        for day in days[:1]:
            hours = sorted(day.glob("hour=*"), reverse=True)
            for hour in hours[:1]:
                try:
                    start = datetime.strptime(f"{day.name[5:]} {hour.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
                except ValueError:
                    continue
                ms = int(start.timestamp() * 1000)
                newest = ms if newest is None else max(newest, ms)
    return newest


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
        execute(conn, f"CREATE TABLE IF NOT EXISTS {check_identifier(name)} AS {sql}", params)


def load_landed_window(duckdb: Any, data_dir: Path, table: str, window: Window) -> dict[str, Any]:
    """Replace one window of a table loaded from the landing zone (raw, execution); returns run metadata."""
    spec = LANDED_TABLES[table]
    params, n_files = landing_params(data_dir, spec.stream, window)
    with warehouse_connection(duckdb) as conn:
        rows = replace_window(conn, table, load_sql(spec.domain, table), params)
    return {"window": str(window), "hours": window.hours, "files": n_files, "rows": rows}


def _date(ms: int) -> str:
    return f"{_utc(ms):%Y-%m-%d}"


def _hour_key(ms: int) -> str:
    return f"{_utc(ms):%Y-%m-%d %H}"


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
