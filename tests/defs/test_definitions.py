"""The code location loads, and the warehouse's asset graph has the expected keys, dependencies and metadata."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    in_process_executor,
    multiprocess_executor,
)

from fundarb_dagster.core.config import ConfigError
from fundarb_dagster.definitions import CELERY_BROKER_ENV, EXECUTOR_ENV, build_executor
from fundarb_dagster.defs.partitions import DAILY, HOURLY, TEMPLATE_PARTITIONS
from fundarb_dagster.instance import dagster_env
from tests.defs.raw.landing_fixtures import land_trades
from tests.servers import redis_server

WAREHOUSE_ASSETS = {
    "instruments": set(),
    "raw_trades": set(),
    "raw_tickers": set(),
    "raw_funding": set(),
    "raw_ohlcv": set(),
    "capture_events": set(),
    "capture_stats": set(),
    "ohlcv_1m": {"raw_trades", "raw_ohlcv"},
    "ohlcv_5m": {"ohlcv_1m", "raw_ohlcv"},
    "ohlcv_1h": {"ohlcv_1m", "raw_ohlcv"},
    "ohlcv_8h": {"ohlcv_1h", "raw_ohlcv"},
    "ohlcv_1d": {"ohlcv_8h", "raw_ohlcv"},
    "indicators": {"ohlcv_1h"},
}


def _defs():
    from fundarb_dagster.definitions import build_definitions

    return build_definitions(TEMPLATE_PARTITIONS)


def test_definitions_load_with_the_warehouse_assets_and_their_dependencies():
    graph = _defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(WAREHOUSE_ASSETS) <= keys
    for name, parents in WAREHOUSE_ASSETS.items():
        node = graph.get(AssetKey(name))
        assert {p.to_user_string() for p in node.parent_keys} == parents, name


def test_every_asset_is_described_with_owners_group_and_column_schema():
    graph = _defs().resolve_asset_graph()
    for name in WAREHOUSE_ASSETS:
        node = graph.get(AssetKey(name))
        assert node.description and len(node.description) > 40, name
        assert node.owners == ["team:warehouse"], name
        assert node.group_name in ("raw", "market"), name
        columns = node.metadata["dagster/column_schema"].columns
        assert len(columns) >= 5, name


def test_partitions_pools_and_bounded_backfills():
    defs = _defs()
    graph = defs.resolve_asset_graph()
    for name in WAREHOUSE_ASSETS:
        node = graph.get(AssetKey(name))
        if name == "instruments":
            assert node.partitions_def is None
            continue
        assert node.partitions_def == (DAILY if name in ("ohlcv_8h", "ohlcv_1d") else HOURLY), name
        # A UI backfill of years is cut into runs of at most a month of keys (a run of ~32 k hourly keys fails
        # in Dagster's sqlite run storage before any step starts).
        assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run == 31 * 24, name
    assets_def = defs.resolve_assets_def(AssetKey("ohlcv_1m"))
    assert {spec.pool for spec in [assets_def.op]} == {"duckdb"}


def test_jobs_sensors_schedules_and_resources_are_registered():
    defs = _defs()
    hourly = defs.resolve_job_def("hourly_job")
    assert hourly.partitions_def == HOURLY
    selected = {k.to_user_string() for k in hourly.asset_layer.selected_asset_keys}
    # one run per hour: the raw tables, the registry, the bars and the funding (the intervals whole)
    assert {"raw_trades", "instruments", "ohlcv_1m", "indicators", "funding_intervals", "funding_rates"} <= selected
    assert "ohlcv_1d" not in selected and "funding_spreads" not in selected
    assert defs.resolve_job_def("daily_job").partitions_def == DAILY
    assert defs.resolve_job_def("signals_job").partitions_def == HOURLY
    # one partition per strategy: each strategy's backtest keeps its own materializations
    assert defs.resolve_job_def("backtests_job").partitions_def.get_partition_keys() == ["cash_carry", "perp_perp"]
    assert {s.name for s in defs.sensors} == {"landing_sensor", "pipeline_sensor"}
    assert {s.name for s in defs.schedules} == {"freshness_schedule"}
    assert {"duckdb", "data_dir", "source"} <= set(defs.resources)


def test_history_job_loads_the_hourly_stage_tables_a_month_per_partition(monkeypatch, tmp_path):
    """history_job: the hourly stage's tables (and funding_spreads, the 8h/1d bars) again under history/, on
    monthly partitions from the month of the deployment's start, with their checks (not the wall-clock freshness
    ones); the live path's jobs keep their hourly partitions."""
    from fundarb_dagster.definitions import defs
    from fundarb_dagster.defs.history import HISTORY_RUN_MONTHS, HISTORY_TABLES
    from fundarb_dagster.defs.jobs import STAGE_BY_JOB

    monkeypatch.setenv("FUNDARB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FUNDARB_PARTITIONS_START", "2020-03-15")
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    job = loaded.resolve_job_def("history_job")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    hourly_tables = set(STAGE_BY_JOB["hourly_job"].assets) - {"instruments", "leverage_tiers"}
    assert selected == {f"history/{name}" for name in HISTORY_TABLES}
    assert {f"history/{n}" for n in (*hourly_tables, "funding_spreads", "ohlcv_8h", "ohlcv_1d")} == selected
    # the month holding the start is the first (its days before the start hold nothing the hours could load)
    assert job.partitions_def.get_first_partition_key() == "2020-03-01"
    assert job.partitions_def.get_partition_keys_between_indexes(0, 2) == ["2020-03-01", "2020-04-01"]
    for name in HISTORY_TABLES:
        copy, live = graph.get(AssetKey(["history", name])), graph.get(AssetKey(name))
        assert copy.group_name == "history", name
        assert copy.backfill_policy.max_partitions_per_run == HISTORY_RUN_MONTHS == 12, name
        assert copy.partitions_def == (None if live.partitions_def is None else job.partitions_def), name
        # lineage inside history: history/ohlcv_1m reads history/raw_trades, not the live raw_trades
        assert {k.to_user_string() for k in copy.parent_keys} <= {*selected, "funding_history"}, name
    assert loaded.resolve_job_def("hourly_job").partitions_def.get_first_partition_key() == "2020-03-15-00:00"
    # a month's spreads read the settlements of the month before (its run recomputes that month's last hours)
    spreads = graph.get(AssetKey(["history", "funding_spreads"]))
    mapping = spreads.partition_mappings[AssetKey(["history", "funding_rates"])]
    assert (mapping.start_offset, mapping.end_offset) == (-1, 0)
    history_checks = {
        (k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys if k.asset_key.path[0] == "history"
    }
    assert ("history/funding_intervals", "funding_intervals_has_no_overlaps") in history_checks
    assert ("history/ohlcv_1m", "ohlcv_1m_has_unique_keys") in history_checks
    assert not [c for c in history_checks if c[1].endswith("_is_fresh")]
    # a history check is evaluated once per run over the run's months, not once per month
    check = AssetCheckKey(AssetKey(["history", "ohlcv_1m"]), "ohlcv_1m_has_unique_keys")
    assert graph.get_check_spec(check).partitions_def is None and graph.get_check_spec(check).blocking


def test_the_loaded_code_location_starts_its_partitions_at_the_setting_or_the_first_landed_day(tmp_path, monkeypatch):
    from fundarb_dagster.definitions import defs
    from tests.defs.raw.landing_fixtures import land_trades

    monkeypatch.setenv("FUNDARB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FUNDARB_PARTITIONS_START", "2026-10-30")
    graph = defs().resolve_asset_graph()
    assert graph.get(AssetKey("raw_trades")).partitions_def.start.isoformat() == "2026-10-30T00:00:00+00:00"
    assert graph.get(AssetKey("ohlcv_1d")).partitions_def.start.isoformat() == "2026-10-30T00:00:00+00:00"
    check = AssetCheckKey(AssetKey("ohlcv_1m"), "ohlcv_1m_has_unique_keys")
    assert graph.get_check_spec(check).partitions_def == graph.get(AssetKey("ohlcv_1m")).partitions_def
    monkeypatch.delenv("FUNDARB_PARTITIONS_START")
    import pandas as pd

    land_trades(tmp_path, pd.DataFrame({"ts_ms": [1_762_000_000_000], "trade_id": [1], "price": 1.0, "amount": 1.0}))
    graph = defs().resolve_asset_graph()
    assert graph.get(AssetKey("raw_trades")).partitions_def.start.isoformat() == "2025-11-01T00:00:00+00:00"


def test_a_bad_partitions_start_names_the_setting_and_the_value(tmp_path, monkeypatch):
    import pytest

    from fundarb_dagster.core.config import ConfigError
    from fundarb_dagster.definitions import defs

    monkeypatch.setenv("FUNDARB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FUNDARB_PARTITIONS_START", "2026-13-01")
    with pytest.raises(ConfigError, match="FUNDARB_PARTITIONS_START: '2026-13-01'"):
        defs()


def test_checks_sit_next_to_their_assets_with_blocking_where_bad_data_must_stop():
    graph = _defs().resolve_asset_graph()
    checks = {key.name: key for key in graph.asset_check_keys}
    for name in (
        "raw_trades_has_unique_keys",
        "ohlcv_1m_has_unique_keys",
        "ohlcv_1m_is_consistent",
        "ohlcv_1m_has_no_gaps",
        "ohlcv_1h_is_consistent",
        "ohlcv_8h_is_consistent",
        "ohlcv_1d_is_consistent",
    ):
        assert name in checks, name
    blocking = {key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    assert {"raw_trades_has_unique_keys", "ohlcv_1m_is_consistent"} <= blocking
    assert "ohlcv_1m_has_no_gaps" not in blocking


def test_every_table_asset_publishes_the_columns_of_core_tables():
    from fundarb_dagster.core.tables import TABLES

    graph = _defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(TABLES) - keys == {"alert_deliveries"}  # written by the alerts asset beside its own table
    for name in set(TABLES) & keys:
        columns = graph.get(AssetKey(name)).metadata["dagster/column_schema"].columns
        assert [(c.name, c.type) for c in columns] == [(c.name, c.kind) for c in TABLES[name].columns], name


def test_the_executor_is_named_by_fundarb_executor_and_a_bad_setting_fails_when_the_code_loads(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert build_executor() is in_process_executor  # the default: steps in the run's process
    monkeypatch.setenv(EXECUTOR_ENV, "multiprocess")
    assert build_executor() is multiprocess_executor
    monkeypatch.setenv(EXECUTOR_ENV, "kubernetes")
    with pytest.raises(ConfigError, match="FUNDARB_EXECUTOR: 'kubernetes' is not one of"):
        build_executor()
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    monkeypatch.delenv(CELERY_BROKER_ENV, raising=False)
    with pytest.raises(ConfigError, match="FUNDARB_CELERY_BROKER: not set"):
        build_executor()
    monkeypatch.setenv(CELERY_BROKER_ENV, "redis://:s3cret@cache:6379/0")
    celery = build_executor()
    assert celery.name == "celery" and "s3cret" not in repr(celery.config_schema)  # read from the environment


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("ducklake:catalog.ducklake", "FUNDARB_WAREHOUSE: 'ducklake:catalog.ducklake': expected ducklake:postgres:"),
        ("ducklake:postgres:dbname=lake host=db", "FUNDARB_LAKE_DATA: not set"),
        ("postgres:dbname=lake password=s3cret", "is neither a DuckDB file nor a lake"),
    ],
)
def test_a_warehouse_that_cannot_be_opened_stops_the_code_location_from_loading(monkeypatch, target, named):
    from fundarb_dagster.definitions import build_definitions

    monkeypatch.setenv("FUNDARB_WAREHOUSE", target)
    monkeypatch.delenv("FUNDARB_LAKE_DATA", raising=False)
    with pytest.raises(ConfigError, match=named) as raised:
        build_definitions(TEMPLATE_PARTITIONS)
    assert "s3cret" not in str(raised.value)


def test_a_lake_on_a_duckdb_without_its_extensions_stops_the_code_location_naming_the_extra(monkeypatch):
    """The suite's venv keeps the newest duckdb, which has no ducklake extension: the lake extra is named."""
    from fundarb_dagster.definitions import build_definitions

    monkeypatch.setenv("FUNDARB_WAREHOUSE", "ducklake:postgres:dbname=lake host=db")
    monkeypatch.setenv("FUNDARB_LAKE_DATA", "/srv/lake")
    if duckdb.__version__ == "1.5.5":
        pytest.skip("this venv has the lake extra's duckdb (tests/defs/test_lake.py opens the lake there)")
    with pytest.raises(ConfigError, match=r"pip install 'fundarb\[lake\]'"):
        build_definitions(TEMPLATE_PARTITIONS)


@pytest.mark.slow
def test_with_fundarb_executor_celery_the_steps_run_on_two_celery_workers(tmp_path: Path, monkeypatch):
    minutes = np.arange(60)  # a trade a minute through 04:00-05:00
    t0_ms = int(pd.Timestamp("2026-03-01 04:00").value // 1_000_000)
    trades = pd.DataFrame({"ts_ms": t0_ms + minutes * 60_000, "trade_id": minutes, "price": 100.0, "amount": 1.0})
    data = tmp_path / "data"
    land_trades(data, trades)
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    with redis_server() as broker:
        env = {**dagster_env(data), EXECUTOR_ENV: "celery", CELERY_BROKER_ENV: broker}
        bin_dir = Path(sys.executable).parent
        logs = [tmp_path / f"worker{i}.log" for i in (1, 2)]
        # the worker command of docs/deploy.md; `solo`: a task runs in the worker's own process (its pid)
        worker = [str(bin_dir / "celery"), "-A", "dagster_celery.app", "-b", broker, "--result-backend", broker]
        worker += ["worker", "-Q", "dagster", "-P", "solo", "--prefetch-multiplier=1", "-l", "INFO"]
        workers = [
            subprocess.Popen([*worker, "-n", f"w{i}@%h"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
            for i, log in enumerate(logs, start=1)
        ]
        try:
            deadline = time.monotonic() + 60
            while not all("ready." in log.read_text() for log in logs):
                assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
                time.sleep(0.5)
            command = [
                str(bin_dir / "dagster"),
                *("asset", "materialize", "-m", "fundarb_dagster.definitions"),
                *("--select", "raw_trades,raw_ohlcv,ohlcv_1m", "--partition", "2026-03-01-04:00"),
            ]
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        starts = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START)
    ran_on = {entry.dagster_event.pid for entry in starts}
    assert ran_on == {worker.pid for worker in workers}, (ran_on, [w.pid for w in workers])  # both, nothing else
    assert len(starts) >= 3  # the three assets and their checks, each a step
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM ohlcv_1m WHERE NOT is_filled").fetchone() == (60,)
