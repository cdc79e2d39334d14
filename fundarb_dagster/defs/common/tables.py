"""Writing and creating warehouse tables from Python frames, by table name (columns from `core.tables`).

A frame is registered under the name its `sql/<domain>/<table>.sql` selects from, so the SQL file stays the
one place that types and orders what lands; the writers are the idempotent ones of `core.sql`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from ...core.sql import (
    check_identifier,
    create_table,
    load_sql,
    registered,
    replace_all,
    replace_key,
    replace_window,
    table_exists,
)
from ...core.tables import empty_frame, table
from ...core.window import Window

EPOCH = Window(datetime(1970, 1, 1), datetime(2200, 1, 1))  # every event time: a whole table's window


def write_window(conn: Any, name: str, frame: pd.DataFrame, window: Window, time_column: str = "ts") -> int:
    """Replace one event-time window of a table with the frame's rows of that window."""
    spec = table(name)
    with registered(conn, spec.frame, frame):
        return replace_window(conn, name, load_sql(spec.domain, name), window.params(), time_column=time_column)


def write_all(conn: Any, name: str, frame: pd.DataFrame) -> int:
    """Rebuild an unpartitioned table whole from the frame."""
    spec = table(name)
    with registered(conn, spec.frame, frame):
        return replace_all(conn, name, load_sql(spec.domain, name))


def write_run(conn: Any, name: str, frame: pd.DataFrame, key_column: str, key: str) -> int:
    """Replace the rows of one run (`key_column = key`, a run_id or report_id) with the frame."""
    spec = table(name)
    with registered(conn, spec.frame, frame):
        return replace_key(conn, name, load_sql(spec.domain, name), key_column, key)


def ensure_tables(conn: Any, *names: str) -> None:
    """Create tables that no run has made yet, empty, with their real columns (read as no rows downstream)."""
    for name in names:
        if table_exists(conn, name):
            continue
        spec = table(name)
        with registered(conn, spec.frame, empty_frame(name)):
            sql = load_sql(spec.domain, name)
            create_table(conn, f"CREATE TABLE IF NOT EXISTS {check_identifier(name)} AS {sql}", EPOCH.params())
