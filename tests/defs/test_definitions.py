"""The code location loads, and the warehouse's asset graph has the expected keys, dependencies and metadata."""

from __future__ import annotations

from dagster import AssetKey

from fundarb_dagster.defs.partitions import DAILY, HOURLY, TEMPLATE_PARTITIONS

WAREHOUSE_ASSETS = {
    "instruments": set(),
    "raw_trades": set(),
    "raw_tickers": set(),
    "raw_funding": set(),
    "raw_ohlcv": set(),
    "capture_events": set(),
    "capture_stats": set(),
    "ohlcv_1m": {"raw_trades", "raw_ohlcv"},
    "ohlcv_5m": {"ohlcv_1m"},
    "ohlcv_1h": {"ohlcv_1m"},
    "ohlcv_1d": {"ohlcv_1h"},
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
        assert node.partitions_def == (DAILY if name == "ohlcv_1d" else HOURLY), name
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


def test_the_loaded_code_location_starts_its_partitions_at_the_setting_or_the_first_landed_day(tmp_path, monkeypatch):
    from fundarb_dagster.definitions import defs
    from tests.defs.raw.landing_fixtures import land_trades

    monkeypatch.setenv("FUNDARB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FUNDARB_PARTITIONS_START", "2026-10-30")
    graph = defs().resolve_asset_graph()
    assert graph.get(AssetKey("raw_trades")).partitions_def.start.isoformat() == "2026-10-30T00:00:00+00:00"
    assert graph.get(AssetKey("ohlcv_1d")).partitions_def.start.isoformat() == "2026-10-30T00:00:00+00:00"
    check = next(k for k in graph.asset_check_keys if k.name == "ohlcv_1m_has_unique_keys")
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
