"""SQL files by name: `sql/<domain>/<name>.sql`, one file per table, parameters bound, never formatted in.

Pure helpers (no Dagster): load a statement, bind only the named parameters it uses (DuckDB rejects a
prepared statement given values it does not reference), and replace one time window of a table
atomically, which is how every partitioned warehouse table stays idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

SQL_ROOT = Path(__file__).resolve().parents[2] / "sql"
_PARAM = re.compile(r"(?<![\w$:])\$([A-Za-z_]\w*)")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def sql_path(domain: str, name: str) -> Path:
    return SQL_ROOT / domain / f"{name}.sql"


@cache
def load_sql(domain: str, name: str) -> str:
    """The text of `sql/<domain>/<name>.sql`; a clear error naming the file when it is missing."""
    path = sql_path(domain, name)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"sql: {path} does not exist (domain={domain!r}, name={name!r})") from None


def parameters_of(sql: str) -> set[str]:
    """The `$name` parameters a statement references (comments and strings are not parsed: keep `$` out)."""
    return set(_PARAM.findall(_strip_comments(sql)))


def bind(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `params` the statement uses; raises naming any parameter it needs but was not given."""
    needed = parameters_of(sql)
    missing = needed - set(params)
    if missing:
        raise KeyError(f"sql parameters: {sorted(missing)} not provided (given {sorted(params)})")
    return {name: params[name] for name in needed}


def execute(conn: Any, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    """Run one statement with bound named parameters; returns the DuckDB connection for fetching."""
    return conn.execute(sql, bind(sql, params or {}))


def check_identifier(name: str) -> str:
    """Table and column names cannot be bound as parameters: accept only plain lowercase identifiers."""
    if not _IDENT.match(name):
        raise ValueError(f"identifier: {name!r} is not a plain lowercase SQL identifier")
    return name


def replace_window(
    conn: Any,
    table: str,
    select_sql: str,
    params: Mapping[str, Any],
    time_column: str = "ts",
    start_param: str = "start",
    end_param: str = "end",
    staged: bool = True,
) -> int:
    """Make `table` hold exactly the rows `select_sql` yields for [$start, $end): delete, then insert.

    The select runs first into a temporary table (so a query reading `table` itself, as ohlcv_1m reads its
    earlier partitions, sees it before the delete), then the delete and insert commit as one transaction;
    the table is created from the query's columns on first use. `staged=False` inserts straight from the
    query inside that transaction (one write instead of two), for queries that do not read `table`: a
    failure still rolls the delete back. Returns the number of rows inserted. Running it twice gives the
    same table (idempotent).
    """
    check_identifier(table)
    check_identifier(time_column)
    window = {"start": params[start_param], "end": params[end_param]}
    delete = f"DELETE FROM {table} WHERE {time_column} >= $start AND {time_column} < $end"
    if not staged:
        execute(conn, f"CREATE TABLE IF NOT EXISTS {table} AS {select_sql} LIMIT 0", params)
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(delete, window)
            inserted = execute(conn, f"INSERT INTO {table} BY NAME {select_sql}", params).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(inserted)
    staging = f"_new_{table}"
    execute(conn, f"CREATE OR REPLACE TEMP TABLE {staging} AS {select_sql}", params)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {staging} LIMIT 0")
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(delete, window)
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staging}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    inserted = conn.execute(f"SELECT count(*) FROM {staging}").fetchone()[0]
    conn.execute(f"DROP TABLE {staging}")
    return int(inserted)


def replace_key(conn: Any, table: str, select_sql: str, key_column: str, key: Any) -> int:
    """Make `table` hold exactly the rows `select_sql` yields for one run (`key_column = key`): delete, then
    insert, in one transaction; the table is created from the query's columns on first use. Returns the rows
    inserted. Running it twice gives the same table (idempotent)."""
    check_identifier(table)  # names cannot be bound as parameters: only plain identifiers get here
    check_identifier(key_column)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {select_sql} LIMIT 0")
    # BEGIN outside the inner try: a ROLLBACK with no transaction open would hide the real error.
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM {table} WHERE {key_column} = $key", {"key": key})
        conn.execute(f"INSERT INTO {table} BY NAME {select_sql}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {key_column} = $key", {"key": key}).fetchone()[0])


def replace_all(conn: Any, table: str, select_sql: str, params: Mapping[str, Any] | None = None) -> int:
    """Unpartitioned tables: rebuild the whole table from the query, atomically."""
    check_identifier(table)
    execute(conn, f"CREATE OR REPLACE TABLE {table} AS {select_sql}", params or {})
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@contextmanager
def registered(conn: Any, name: str, frame: Any) -> Iterator[None]:
    """A frame visible to SQL as `name` for the block. DuckDB 2 refuses (un)register while a result is
    half-fetched (`fetchone`), so any such result is finished first."""
    conn.execute("SELECT 1").fetchall()
    conn.register(name, frame)
    try:
        yield
    finally:
        conn.execute("SELECT 1").fetchall()
        conn.unregister(name)


def table_exists(conn: Any, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $name AND table_type = 'BASE TABLE'",
        {"name": table},
    ).fetchone()
    return bool(row[0])


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
