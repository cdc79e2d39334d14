"""Opening the warehouse file from outside Dagster (the trader, tests, tools) and inside it (the assets'
`warehouse_connection`): DuckDB allows one read-write process per file and refuses even read-only opens while
it is held, so every open waits out the lock with jittered back-off instead of failing."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import duckdb


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
