"""SQL files by name: `sql/<domain>/<name>.sql`, one file per table, parameters bound, never formatted in.

Pure helpers (no Dagster): load a statement, bind only the named parameters it uses (DuckDB rejects a
prepared statement given values it does not reference), and replace one time window of a table
atomically, which is how every partitioned warehouse table stays idempotent.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SQL_ROOT = Path(__file__).resolve().parents[2] / "sql"
_PARAM = re.compile(r"(?<![\w$:])\$([A-Za-z_]\w*)")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
# A DuckLake commit that lost to another writer's (the same table created, or rows of one data file deleted,
# by both): nothing of it was written. A DuckDB file never raises it (one writer process).
CONFLICT = "Transaction conflict"


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


def delete_window(conn: Any, table: str, start: Any, end: Any, time_column: str = "ts") -> None:
    """Delete the rows of `table` whose `time_column` is in [start, end): the window `replace_window` replaces."""
    check_identifier(table)
    check_identifier(time_column)
    conn.execute(
        f"DELETE FROM {table} WHERE {time_column} >= $start AND {time_column} < $end", {"start": start, "end": end}
    )


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
    start, end = params[start_param], params[end_param]
    if not staged:
        create_table(conn, f"CREATE TABLE IF NOT EXISTS {table} AS {select_sql} LIMIT 0", params)

        def direct() -> int:
            delete_window(conn, table, start, end, time_column)
            return execute(conn, f"INSERT INTO {table} BY NAME {select_sql}", params).fetchone()[0]

        return int(in_transaction(conn, direct))
    staging = f"_new_{table}"
    execute(conn, f"CREATE OR REPLACE TEMP TABLE {staging} AS {select_sql}", params)
    create_table(conn, f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {staging} LIMIT 0")

    def from_staging() -> None:
        delete_window(conn, table, start, end, time_column)
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staging}")

    in_transaction(conn, from_staging)
    inserted = conn.execute(f"SELECT count(*) FROM {staging}").fetchone()[0]
    conn.execute(f"DROP TABLE {staging}")
    return int(inserted)


def replace_key(conn: Any, table: str, select_sql: str, key_column: str, key: Any) -> int:
    """Make `table` hold exactly the rows `select_sql` yields for one run (`key_column = key`): delete, then
    insert, in one transaction; the table is created from the query's columns on first use. Returns the rows
    inserted. Running it twice gives the same table (idempotent)."""
    check_identifier(table)  # names cannot be bound as parameters: only plain identifiers get here
    check_identifier(key_column)
    create_table(conn, f"CREATE TABLE IF NOT EXISTS {table} AS {select_sql} LIMIT 0")

    def by_key() -> None:
        conn.execute(f"DELETE FROM {table} WHERE {key_column} = $key", {"key": key})
        conn.execute(f"INSERT INTO {table} BY NAME {select_sql}")

    in_transaction(conn, by_key)
    return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {key_column} = $key", {"key": key}).fetchone()[0])


def in_transaction(conn: Any, statements: Callable[[], T], attempts: int = 8) -> T:
    """Run `statements` in one transaction: all of it commits or none. A commit a DuckLake refuses because
    another writer's committed first (`CONFLICT`) is retried on the newer snapshot, after a jittered pause:
    the callers' statements replace a window or a key, so running them again gives the same rows."""
    for attempt in range(1, attempts + 1):
        # BEGIN outside the try: a ROLLBACK with no transaction open would hide the real error
        conn.execute("BEGIN TRANSACTION")
        committing = False
        try:
            result = statements()
            committing = True
            conn.execute("COMMIT")  # a failed COMMIT ends the transaction: nothing to roll back
            return result
        except BaseException as exc:
            if not committing:
                conn.execute("ROLLBACK")
            if CONFLICT not in str(exc) or attempt == attempts:
                raise
        time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def create_table(conn: Any, create_sql: str, params: Mapping[str, Any] | None = None) -> None:
    """Run a `CREATE TABLE IF NOT EXISTS`: where two writers of a DuckLake create the same table at once, the
    one whose commit lost finds it made on the second try."""
    for attempt in (1, 2):
        try:
            execute(conn, create_sql, params)
            return
        except Exception as exc:
            if CONFLICT not in str(exc) or attempt == 2:
                raise


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
