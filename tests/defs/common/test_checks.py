"""The shared check builders on a real DuckDB file: a window with no rows warns "no data" instead of passing,
a window with rows is checked; and every check of the code location has its own descriptive name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dagster import AssetCheckSeverity, AssetRecordsFilter, DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from fundarb_dagster.defs.market import checks as market_checks
from fundarb_dagster.defs.market.assets import ohlcv_1m
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
from tests.defs.raw.landing_fixtures import land_trades, run

CHECKED = ("ohlcv_1m_has_unique_keys", "ohlcv_1m_is_consistent", "ohlcv_1m_has_no_gaps")
T0_MS = int(pd.Timestamp("2026-03-01 04:00").value // 1_000_000)


def _evaluate(data_dir: Path, partition: str) -> dict:
    checks = [c for c in market_checks.MARKET_CHECKS if c.check_key.name in CHECKED]
    result = run([raw_trades, raw_ohlcv, ohlcv_1m, *checks], data_dir, partition=partition)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_over_an_hour_without_rows_warn_no_data_and_an_hour_with_rows_is_checked(tmp_path: Path):
    # a trade every 30 s through 04:00-05:00; nothing landed in 03:00
    minutes = np.arange(120)
    trades = pd.DataFrame(
        {"ts_ms": T0_MS + minutes * 30_000, "trade_id": minutes, "price": 100.0 + minutes % 7, "amount": 1.0}
    )
    land_trades(tmp_path, trades)

    empty = _evaluate(tmp_path, "2026-03-01-03:00")
    assert set(empty) == set(CHECKED)
    for name, evaluation in empty.items():
        assert not evaluation.passed, name
        assert evaluation.severity == AssetCheckSeverity.WARN, name
        assert evaluation.description.startswith("no data: 0 "), evaluation.description
        assert evaluation.metadata["rows_checked"].value == 0

    full = _evaluate(tmp_path, "2026-03-01-04:00")
    for name, evaluation in full.items():
        assert evaluation.passed, (name, evaluation.metadata)
    assert full["ohlcv_1m_has_unique_keys"].metadata["rows_checked"].value == 60


def test_every_check_name_is_unique_and_says_which_table_it_checks():
    from fundarb_dagster.definitions import build_definitions
    from fundarb_dagster.defs.partitions import TEMPLATE_PARTITIONS

    keys = list(build_definitions(TEMPLATE_PARTITIONS).resolve_asset_graph().asset_check_keys)
    live = [key for key in keys if key.asset_key.path[0] != "history"]
    names = [key.name for key in live]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for key in keys:
        # `<table>_<property>`: the name starts with its table, so a list of names reads on its own
        assert key.name.startswith(key.asset_key.path[-1] + "_"), key
    # history/<table> (monthly partitions, defs/history.py) carries its table's own checks under the same names
    history = {(key.asset_key.path[-1], key.name) for key in keys if key.asset_key.path[0] == "history"}
    assert history and history <= {(key.asset_key.path[-1], key.name) for key in live}


def test_a_ranged_run_records_its_checks_result_for_every_partition_it_covered(tmp_path: Path):
    # Dagster plans a ranged run's partitioned check once per partition; a result recorded for no partition
    # left them all "planned", which the UI's Checks tab lists as Skipped. 03:00 is empty, 04:00-05:00 full.
    minutes = np.arange(120)
    trades = pd.DataFrame(
        {"ts_ms": T0_MS + minutes * 30_000, "trade_id": minutes, "price": 100.0 + minutes % 7, "amount": 1.0}
    )
    land_trades(tmp_path, trades)
    checks = [c for c in market_checks.MARKET_CHECKS if c.check_key.name in CHECKED]
    with DagsterInstance.ephemeral() as instance:
        result = run(
            [raw_trades, raw_ohlcv, ohlcv_1m, *checks],
            tmp_path,
            first="2026-03-01-03:00",
            last="2026-03-01-05:00",
            instance=instance,
        )
        hours = ["2026-03-01-03:00", "2026-03-01-04:00", "2026-03-01-05:00"]
        evaluations = result.get_asset_check_evaluations()
        assert sorted((e.check_name, e.partition) for e in evaluations) == sorted(
            (name, hour) for name in CHECKED for hour in hours
        )
        for check in checks:
            records = instance.event_log_storage.get_asset_check_execution_history(check.check_key, limit=10)
            assert sorted(r.partition for r in records) == hours  # one execution per partition, none planned only
            assert {r.status for r in records} == {AssetCheckExecutionRecordStatus.SUCCEEDED}, check.check_key
            # each names the materialization of its own partition, and the window its result covered
            for record in records:
                event = record.event.dagster_event.event_specific_data
                assert event.metadata["window"].value == "2026-03-01-03:00 .. 2026-03-01-05:00 (3 partitions)"
                target = instance.fetch_materializations(
                    AssetRecordsFilter(asset_key=ohlcv_1m.key, asset_partitions=[record.partition]), limit=1
                ).records[0]
                assert event.target_materialization_data.storage_id == target.storage_id
        # one result over the window: the 60 minutes x 2 rows of 04:00-05:00
        unique = next(e for e in evaluations if e.check_name == "ohlcv_1m_has_unique_keys")
        assert unique.metadata["rows_checked"].value == 120
