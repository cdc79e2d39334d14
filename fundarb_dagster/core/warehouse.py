"""How the warehouse is opened, from outside Dagster (the trader, tests, tools) and inside it (the assets'
`warehouse_connection`). `FUNDARB_WAREHOUSE` (or the resource's `database`) names one of two targets:

- a DuckDB file (the default, `<data_dir>/warehouse.duckdb`): DuckDB allows one read-write process per file
  and refuses even read-only opens while it is held, so every open waits out the lock with jittered back-off
  instead of failing, and the "duckdb" pool runs one writer at a time;
- a DuckLake (`ducklake:postgres:dbname=fundarb host=db-host ...`, its Parquet files under `FUNDARB_LAKE_DATA`):
  the catalog lives in Postgres, so several processes on several machines write the same tables at once and
  every transaction reads one snapshot. The connection is an in-memory DuckDB with the lake attached and made
  the default database, so every asset's SQL runs unchanged. The extensions come from the `lake` extra's
  wheels (`pip install 'fundarb[lake]'`, duckdb 1.5.5), loaded from their files: nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .config import ConfigError
from .sql import check_identifier
from .tables import TABLES, Table

log = logging.getLogger(__name__)

WAREHOUSE_ENV = "FUNDARB_WAREHOUSE"
LAKE_DATA_ENV = "FUNDARB_LAKE_DATA"
LAKE_PREFIX = "ducklake:"
LAKE_CATALOGS = ("postgres:",)  # a DuckDB-file catalog admits one writer process: no gain over the file
LAKE_NAME = "lake"  # the attached database's name, made the default (USE)
LAKE_EXTRA = "pip install 'fundarb[lake]'"
# extension name -> the wheel (package) that ships it for one duckdb version (the `lake` extra)
LAKE_EXTENSIONS = {"postgres_scanner": "duckdb_extension_postgres_scanner", "ducklake": "duckdb_extension_ducklake"}
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")
_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class Lake:
    """A DuckLake target: the catalog (`postgres:<libpq key=value ...>`) and where its Parquet files go."""

    catalog: str
    data_path: str

    def shown(self) -> str:
        """The target as it may be logged: any password in the connection string replaced."""
        return hide_password(LAKE_PREFIX + self.catalog)


def hide_password(text: str) -> str:
    """`text` with the password of a libpq `password=...` or a URL's `user:password@` replaced."""
    return _URL_PASSWORD.sub(r"\1***@", _PASSWORD.sub(r"\1***", text))


def lake_target(target: str, data_path: str = "") -> Lake | None:
    """The lake `target` names (`ducklake:postgres:...`), or None for a DuckDB file; a clear error for a lake
    target that cannot work, naming the variable and its value (the password hidden), before anything runs.
    `data_path` empty: `FUNDARB_LAKE_DATA`."""
    if not target.lower().startswith(LAKE_PREFIX):
        if target.lower().startswith("postgres"):  # a catalog without the lake's prefix
            raise ConfigError(
                f"{WAREHOUSE_ENV}: {hide_password(target)!r} is neither a DuckDB file nor a lake: "
                f"write {LAKE_PREFIX}postgres:dbname=<database> host=<host> ... for a DuckLake on Postgres"
            )
        return None
    catalog = target[len(LAKE_PREFIX) :].strip()
    lake = Lake(catalog, data_path or os.environ.get(LAKE_DATA_ENV, ""))
    if not catalog.startswith(LAKE_CATALOGS) or "dbname=" not in catalog:
        raise ConfigError(
            f"{WAREHOUSE_ENV}: {lake.shown()!r}: expected {LAKE_PREFIX}postgres:dbname=<database> host=<host> "
            "[port=... user=... password=...] (a catalog on Postgres, which several writer processes share)"
        )
    if not lake.data_path:
        raise ConfigError(
            f"{LAKE_DATA_ENV}: not set; {WAREHOUSE_ENV}={lake.shown()!r} needs the folder (or object store URL) "
            "every writer and reader reaches, where the lake's Parquet files go"
        )
    return lake


def extension_file(name: str) -> Path:
    """The extension's file in its wheel for this duckdb; a clear error naming the extra when it is missing."""
    package = LAKE_EXTENSIONS[name]
    spec = importlib.util.find_spec(package)
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    path = folder / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension" if folder else None
    if path is None or not path.is_file():
        shipped = sorted(p.name for p in (folder / "extensions").glob("v*")) if folder else []
        raise ConfigError(
            f"{WAREHOUSE_ENV}: a DuckLake needs the {name} extension for duckdb {duckdb.__version__} "
            f"({package}: {'ships ' + ', '.join(shipped) if shipped else 'not installed'}): {LAKE_EXTRA} "
            "(duckdb 1.5.5 and its ducklake and postgres extensions)"
        )
    return path


def extension_files() -> list[Path]:
    """The lake's extensions (postgres first: the ducklake catalog loads through it), each checked."""
    return [extension_file(name) for name in LAKE_EXTENSIONS]


def check_target(target: str, lake_data: str = "") -> Lake | None:
    """`lake_target`, and for a lake its extensions present: what stops a run (or a code location) before it
    starts when the warehouse cannot be opened."""
    lake = lake_target(target, lake_data)
    if lake is not None:
        extension_files()
    return lake


# One in-memory DuckDB per lake and process, the extensions loaded and the lake attached once (a LOAD of both
# extensions and an ATTACH cost ~0.4 s idle, ~1 s under load): each `connect_lake` is a new connection to it,
# with its own transactions and temporary tables. Keyed by the lake, read_only and the config.
_ATTACHED: dict[tuple[Lake, bool, tuple[tuple[str, str], ...]], duckdb.DuckDBPyConnection] = {}


def connect_lake(
    lake: Lake, read_only: bool = False, config: dict[str, Any] | None = None, timeout_s: float = 60.0
) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the lake: every unqualified table is the lake's. Each
    transaction reads the lake's latest snapshot when it starts."""
    key = (lake, read_only, tuple(sorted((k, str(v)) for k, v in (config or {}).items())))
    if key not in _ATTACHED:
        _ATTACHED[key] = attach_lake(lake, read_only, config, timeout_s)
    conn = _ATTACHED[key].cursor()
    conn.execute(f"USE {LAKE_NAME}")
    return conn


def attach_lake(
    lake: Lake, read_only: bool = False, config: dict[str, Any] | None = None, timeout_s: float = 60.0
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the extensions loaded from their wheels and the lake attached.

    The first writers of a new lake race to create its catalog tables in Postgres: the losers' ATTACH fails
    and is retried (jittered back-off, up to `timeout_s`), then finds the catalog made."""
    files = extension_files()  # both checked before connecting
    conn = duckdb.connect(":memory:", config=dict(config or {}))
    try:
        for path in files:
            conn.execute(f"LOAD {_literal(str(path))}")  # a file path: never INSTALL from the network
        # ATTACH takes no bound parameters: the values go in as quoted literals
        options = f"DATA_PATH {_literal(lake.data_path)}" + (", READ_ONLY" if read_only else "")
        attach = f"ATTACH {_literal(LAKE_PREFIX + lake.catalog)} AS {LAKE_NAME} ({options})"
        deadline, delay = time.monotonic() + timeout_s, 0.05
        while True:
            try:
                conn.execute(attach)
                return conn
            except duckdb.Error as exc:
                if "Failed to initialize DuckLake" not in str(exc) or time.monotonic() + delay > deadline:
                    # DuckDB's message repeats the connection string: never show its password
                    message = f"{WAREHOUSE_ENV}: cannot attach {lake.shown()!r}: {hide_password(str(exc))}"
                    raise ConnectionError(message) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
    except BaseException:
        conn.close()
        raise


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    target: str,
    read_only: bool = False,
    config: dict[str, Any] | None = None,
    timeout_s: float = 300.0,
    lake_data: str = "",
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse `target` names: a DuckLake (`ducklake:...`) or a DuckDB file (waiting out locks)."""
    lake = lake_target(target, lake_data)
    if lake is not None:
        return connect_lake(lake, read_only=read_only, config=config, timeout_s=timeout_s)
    return connect_with_retry(target, read_only=read_only, config=config, timeout_s=timeout_s)


def is_lake(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's default database is a DuckLake (no indexes, keys or sequences there)."""
    row = conn.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return bool(row) and row[0] == "ducklake"


def warehouse_target(data_dir: Path) -> str:
    """What the warehouse is: `FUNDARB_WAREHOUSE` (a DuckDB file or a lake), else `<data_dir>/warehouse.duckdb`."""
    return os.environ.get(WAREHOUSE_ENV) or str(data_dir / "warehouse.duckdb")


def is_lock_error(exc: BaseException) -> bool:
    message = str(exc)
    return isinstance(exc, duckdb.IOException) and ("lock" in message.lower() or "Conflicting" in message)


def connect_with_retry(
    database: str,
    read_only: bool = False,
    config: dict[str, Any] | None = None,
    timeout_s: float = 300.0,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, retrying while another process holds its lock.

    Delays grow from 50 ms to at most 2 s with jitter (so two waiting processes do not retry in step),
    until `timeout_s`; then the last lock error is raised. Any other error is raised at once.
    """
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database, read_only=read_only, config=dict(config or {}))
        except duckdb.IOException as exc:
            if not is_lock_error(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def add_missing_columns(conn: duckdb.DuckDBPyConnection, tables: Mapping[str, Table] = TABLES) -> list[str]:
    """Migrate a warehouse made by an earlier version: each stored table gains the columns `core/tables.py`
    declares for it and it lacks (e.g. the bars' `quote_volume`, `trade_count`, `taker_buy_volume`, `source`),
    NULL in the rows written before; re-materializing a window fills them. Without this, writing a window of
    an old table fails (`INSERT ... BY NAME`: no such column). Returns the `table.column`s added."""
    stored: dict[str, set[str]] = {}
    for name, column in conn.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall():
        stored.setdefault(name, set()).add(column)
    added = []
    for name, have in stored.items():
        if name not in tables:
            continue
        for column, kind in tables[name].duckdb_columns:
            if column not in have:
                conn.execute(f"ALTER TABLE {check_identifier(name)} ADD COLUMN {check_identifier(column)} {kind}")
                added.append(f"{name}.{column}")
    if added:
        log.warning(f"warehouse: columns added to tables made by an earlier version (NULL in older rows): {added}")
    return added
