"""The data folder's Dagster instance: what `fundarb demo` writes and `fundarb ui` opens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.config import ConfigError
from fundarb_dagster.core.warehouse import LAKE_DATA_ENV, WAREHOUSE_ENV
from fundarb_dagster.defs.resources import POOL
from fundarb_dagster.instance import (
    DAGSTER_YAML,
    EVENT_BATCH_ENV,
    LAKE_WRITERS,
    PG_URL_ENV,
    PLANNED_EVENTS_ENV,
    dagster_env,
)
from tests.defs.raw.landing_fixtures import land_trades
from tests.servers import create_database, postgres_server, query


def test_dagster_env_points_at_the_data_folder_home_with_the_pool_config(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("FUNDARB_CONFIG", raising=False)
    monkeypatch.delenv(PG_URL_ENV, raising=False)
    env = dagster_env(tmp_path / "data")
    home = (tmp_path / "data" / "dagster_home").resolve()
    assert env["DAGSTER_HOME"] == str(home) and env["FUNDARB_DATA_DIR"] == str((tmp_path / "data").resolve())
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML.read_text()  # the duckdb pool limit of 1
    assert "FUNDARB_CONFIG" not in env
    assert env[PLANNED_EVENTS_ENV] == "true" and env[EVENT_BATCH_ENV] == "1000"  # Dagster's bookkeeping, cut


def test_dagster_env_keeps_an_edited_instance_config_and_uses_the_demo_config(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("FUNDARB_CONFIG", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("# edited\n")
    (tmp_path / "demo_config.yaml").write_text("source: sim\n")
    env = dagster_env(tmp_path)
    assert (home / "dagster.yaml").read_text() == "# edited\n"
    assert env["FUNDARB_CONFIG"] == str((tmp_path / "demo_config.yaml").resolve())


def test_the_instance_config_follows_dagster_pg_url_and_names_the_variable_not_the_url(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(PG_URL_ENV, "postgresql+psycopg2://desk:s3cret@db.internal:5432/dagster")
    dagster_env(tmp_path)
    written = (tmp_path / "dagster_home" / "dagster.yaml").read_text()
    assert written.startswith(DAGSTER_YAML.read_text())  # the pools and run queue stay
    assert f"env: {PG_URL_ENV}" in written and "s3cret" not in written and "db.internal" not in written
    monkeypatch.delenv(PG_URL_ENV)
    dagster_env(tmp_path)  # back to sqlite: a file fundarb wrote follows the variable
    assert (tmp_path / "dagster_home" / "dagster.yaml").read_text() == DAGSTER_YAML.read_text()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://desk:s3cret@db:5432/dagster", "scheme 'postgresql'"),  # SQLAlchemy would take psycopg 3
        ("postgresql+psycopg2://desk:s3cret@db:5432/", "database ''"),
        ("sqlite:///tmp/x.db", "scheme 'sqlite'"),
    ],
)
def test_a_bad_dagster_pg_url_fails_before_anything_starts_without_showing_the_password(
    tmp_path: Path, monkeypatch, url: str, named: str
):
    monkeypatch.setenv(PG_URL_ENV, url)
    with pytest.raises(ConfigError, match=PG_URL_ENV) as raised:
        dagster_env(tmp_path)
    assert named in str(raised.value) and "s3cret" not in str(raised.value)
    assert not (tmp_path / "dagster_home" / "dagster.yaml").exists()


@pytest.mark.slow
def test_with_dagster_pg_url_runs_events_and_checks_live_in_postgres(tmp_path: Path, monkeypatch):
    minutes = np.arange(120)  # a trade every 30 s through 04:00-05:00
    t0_ms = int(pd.Timestamp("2026-03-01 04:00").value // 1_000_000)
    trades = pd.DataFrame(
        {"ts_ms": t0_ms + minutes * 30_000, "trade_id": minutes, "price": 100.0 + minutes % 7, "amount": 1.0}
    )
    data = tmp_path / "data"
    land_trades(data, trades)
    with postgres_server() as server:
        url = create_database(server, "dagster")
        monkeypatch.setenv(PG_URL_ENV, url)
        monkeypatch.delenv("FUNDARB_CONFIG", raising=False)
        env = dagster_env(data)
        # real runs through Dagster's CLI, each in its own process, on the instance dagster_env wrote
        hours = ["2026-03-01-03:00", "2026-03-01-04:00", "2026-03-01-05:00"]
        for hour in hours:
            command = [
                str(Path(sys.executable).with_name("dagster")),
                *("asset", "materialize", "-m", "fundarb_dagster.definitions"),
                *("--select", "raw_trades,raw_ohlcv,ohlcv_1m", "--partition", hour),
            ]
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        # what Dagster stored, read back from Postgres with psycopg2
        assert query(url, "SELECT status FROM runs") == [("SUCCESS",)] * 3
        materialized = query(
            url,
            "SELECT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND asset_key = '[\"ohlcv_1m\"]' ORDER BY partition",
        )
        assert [p for (p,) in materialized] == hours
        checks = query(
            url,
            "SELECT partition, execution_status FROM asset_check_executions "
            "WHERE check_name = 'ohlcv_1m_has_unique_keys' ORDER BY partition",
        )
        # 03:00 had no trades: its check warns "no data" (a failed WARN), the others passed
        assert checks == [(hours[0], "FAILED"), (hours[1], "SUCCEEDED"), (hours[2], "SUCCEEDED")]
    home = Path(env["DAGSTER_HOME"])
    assert not list(home.rglob("*.db"))  # no sqlite storage: runs, events and schedules went to Postgres


def test_with_a_lake_warehouse_the_writers_pool_admits_several_runs(tmp_path: Path, monkeypatch):
    """The "duckdb" pool (every warehouse writer's) is 1 for a DuckDB file and LAKE_WRITERS for a DuckLake:
    the instance Dagster opens on the written dagster.yaml gives the pool that many slots, and back."""
    from dagster import DagsterInstance

    monkeypatch.delenv(PG_URL_ENV, raising=False)
    monkeypatch.setenv(WAREHOUSE_ENV, "ducklake:postgres:dbname=fundarb host=db.internal password=s3cret")
    monkeypatch.setenv(LAKE_DATA_ENV, str(tmp_path / "lake"))
    limits = []
    for lake in (True, False):
        if not lake:
            monkeypatch.delenv(WAREHOUSE_ENV)
        env = dagster_env(tmp_path)
        written = Path(env["DAGSTER_HOME"], "dagster.yaml").read_text()
        assert "s3cret" not in written and "db.internal" not in written
        monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with DagsterInstance.get() as instance:
            instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
            limits.append(
                (
                    instance.global_op_concurrency_default_limit,
                    instance.event_log_storage.get_concurrency_info(POOL).slot_count,
                )
            )
    assert limits == [(LAKE_WRITERS, LAKE_WRITERS), (1, 1)]  # the same storage's pool row follows the setting


@pytest.mark.parametrize(
    ("target", "lake_data", "named"),
    [
        ("ducklake:postgres:dbname=fundarb host=db password=s3cret", "", "FUNDARB_LAKE_DATA: not set"),
        ("ducklake:/data/catalog.ducklake", "/data/lake", "expected ducklake:postgres:dbname="),
        ("postgresql://desk:s3cret@db/fundarb", "", "neither a DuckDB file nor a lake"),
    ],
)
def test_a_bad_lake_target_fails_before_the_instance_is_written(tmp_path, monkeypatch, target, lake_data, named):
    monkeypatch.setenv(WAREHOUSE_ENV, target)
    monkeypatch.setenv(LAKE_DATA_ENV, lake_data)
    with pytest.raises(ConfigError, match=named) as raised:
        dagster_env(tmp_path)
    assert "s3cret" not in str(raised.value)
    assert not (tmp_path / "dagster_home" / "dagster.yaml").exists()
