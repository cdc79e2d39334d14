"""Opening the warehouse file from outside Dagster (the trader, tests, tools) and inside it (the assets'
`warehouse_connection`): DuckDB allows one read-write process per file and refuses even read-only opens while
it is held, so every open waits out the lock with jittered back-off instead of failing."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from .sql import check_identifier
from .tables import TABLES, Table

log = logging.getLogger(__name__)


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
