"""How the warehouse target is read: a DuckDB file (the default) or a DuckLake, and the errors for the rest."""

from __future__ import annotations

import duckdb
import pytest

from fundarb_dagster.core.alerts.delivery import ensure_tables
from fundarb_dagster.core.config import ConfigError
from fundarb_dagster.core.warehouse import (
    LAKE_EXTRA,
    Lake,
    check_target,
    connect,
    hide_password,
    is_lake,
    lake_target,
)

LAKE = "ducklake:postgres:dbname=fundarb host=db.internal port=5432 user=desk password=s3cret"


def test_a_file_path_is_not_a_lake_and_opens_as_a_duckdb_file(tmp_path):
    path = str(tmp_path / "w" / "warehouse.duckdb")
    assert lake_target(path) is None and check_target(path) is None
    conn = connect(path)
    try:
        assert not is_lake(conn)
        conn.execute("CREATE TABLE t AS SELECT 1 AS x")
    finally:
        conn.close()
    assert duckdb.connect(path, read_only=True).execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_lake_target_names_its_postgres_catalog_and_its_data_path(monkeypatch):
    monkeypatch.setenv("FUNDARB_LAKE_DATA", "/mnt/lake/")
    lake = lake_target(LAKE)
    assert lake == Lake("postgres:dbname=fundarb host=db.internal port=5432 user=desk password=s3cret", "/mnt/lake/")
    assert lake_target(LAKE, "s3://desk/lake/") == Lake(lake.catalog, "s3://desk/lake/")  # the resource's field wins
    assert "s3cret" not in lake.shown() and "password=***" in lake.shown()


@pytest.mark.parametrize(
    ("target", "data", "named"),
    [
        (LAKE, "", "FUNDARB_LAKE_DATA: not set"),
        ("ducklake:catalog.ducklake", "/lake", "expected ducklake:postgres:dbname="),  # one writer: no gain
        ("ducklake:postgres:host=db password=s3cret", "/lake", "expected ducklake:postgres:dbname="),
        ("postgres:dbname=fundarb password=s3cret", "/lake", "neither a DuckDB file nor a lake"),
        ("postgresql://desk:s3cret@db/fundarb", "/lake", "neither a DuckDB file nor a lake"),
    ],
)
def test_a_bad_warehouse_target_names_the_variable_and_value_without_the_password(monkeypatch, target, data, named):
    monkeypatch.delenv("FUNDARB_LAKE_DATA", raising=False)
    with pytest.raises(ConfigError, match=named) as raised:
        lake_target(target, data)
    assert "FUNDARB_" in str(raised.value) and "s3cret" not in str(raised.value)


def test_a_lake_on_a_duckdb_without_its_extensions_says_which_extra_to_install(monkeypatch):
    """The suite's venv has the newest duckdb, for which no ducklake extension exists: the lake is refused
    before connecting, naming the extra (tests/defs/test_lake.py runs the lake with the extra installed)."""
    monkeypatch.setenv("FUNDARB_LAKE_DATA", "/tmp/lake")
    if duckdb.__version__ == "1.5.5":
        pytest.skip("this venv has the lake extra's duckdb")
    for call in (lambda: check_target(LAKE), lambda: connect(LAKE)):
        with pytest.raises(ConfigError, match="FUNDARB_WAREHOUSE") as raised:
            call()
        assert LAKE_EXTRA in str(raised.value) and duckdb.__version__ in str(raised.value)


def test_passwords_are_hidden_in_libpq_strings_and_urls():
    assert hide_password("dbname=x password=abc host=h") == "dbname=x password=*** host=h"
    assert hide_password("postgresql://u:abc@h/db") == "postgresql://u:***@h/db"


def test_in_a_duckdb_file_a_second_alert_with_a_stored_id_is_refused(tmp_path):
    """The lake has no keys or indexes, so alerts.sql has none: in a file, alerts_key.sql keeps alert_id unique."""
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_tables(conn)
    ensure_tables(conn)  # idempotent
    row = "('a1', TIMESTAMP '2026-01-01', 'warning', 'r', 's', 1.0, 2.0, 'm')"
    conn.execute(f"INSERT INTO alerts VALUES {row}")
    with pytest.raises(duckdb.ConstraintException):
        conn.execute(f"INSERT INTO alerts VALUES {row}")
