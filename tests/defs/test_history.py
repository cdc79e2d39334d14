"""Imported history's copies on monthly partitions, materialized for real: the windows their steps and checks use."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, MonthlyPartitionsDefinition, asset, materialize

from fundarb_dagster.core.importer import import_files
from fundarb_dagster.defs.common.landing import NO_INPUT, ensure_raw_tables
from fundarb_dagster.defs.history import history_assets, history_checks
from fundarb_dagster.defs.partitions import partition_window
from fundarb_dagster.defs.raw import assets as raw_assets
from fundarb_dagster.defs.raw import checks as raw_checks
from tests.core.binance_archives import write_csv
from tests.defs.raw.landing_fixtures import RANGE_END, RANGE_START, query, resources

HOUR = 3_600_000
JAN_31 = 1_706_659_200_000  # 2024-01-31 00:00 UTC: the history starts on a month's last day
SETTLEMENTS = [JAN_31 + h * HOUR for h in range(0, 32, 8)]  # 01-31 00, 08, 16 and 02-01 00


@pytest.fixture
def history_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two days of one 8h venue's funding imported (day files: 2024-01-31 and 2024-02-01), nothing else."""
    rows = [[t + 7, 8, "0.00010000"] for t in SETTLEMENTS]
    write_csv(tmp_path / "files" / "BTCUSDT-fundingRate-2024-01.csv", rows, None, [], False)
    data = tmp_path / "data"
    summary = import_files([tmp_path / "files"], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert summary.ok, summary
    # the data folder is given only through the data_dir resource: the monthly windows' landed bounds are read
    # there, not from FUNDARB_DATA_DIR (here a folder with nothing landed)
    monkeypatch.setenv("FUNDARB_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("FUNDARB_PARTITIONS_START", raising=False)  # the start: the first landed day
    return data


def _raw_funding_history() -> list:
    assets = history_assets([raw_assets.raw_funding])
    of_funding = [c for c in raw_checks.CHECKS if AssetKey("raw_funding") in {k.asset_key for k in c.check_keys}]
    checks = history_checks(of_funding)
    assert checks, "raw_funding has checks to copy"
    return [*assets, *checks]


def _windows(result: object) -> tuple[list[str], list[str]]:
    """The event windows the run's materializations and check evaluations name in their metadata."""
    materialized = [m.metadata["window"].value for m in result.asset_materializations_for_node("raw_funding")]
    checked = [e.metadata["event_window"].value for e in result.get_asset_check_evaluations()]
    return materialized, checked


def test_history_checks_look_at_the_window_clamped_to_landed_data(history_dir: Path) -> None:
    """A history month that is partial (the first month starts on its last day, the newest ends with its day
    files' day) is loaded over the landed part only, and its checks look at that same window, not the whole
    month: an asset check's context has no `assets_def` to tell monthly partitions by."""
    defs = _raw_funding_history()
    january = materialize(defs, resources=resources(history_dir), partition_key="2024-01-01")
    assert january.success
    assert _windows(january) == (["[2024-01-31 00:00, 2024-02-01 00:00)"], ["[2024-01-31 00:00, 2024-02-01 00:00)"])
    february = materialize(defs, resources=resources(history_dir), partition_key="2024-02-01")
    # raw_funding also loads the 25 h before its window (core/look_back.py: what the month's first settlements
    # read), never before the start; its check looks at the month's own window
    assert _windows(february) == (["[2024-01-31 00:00, 2024-02-02 00:00)"], ["[2024-02-01 00:00, 2024-02-02 00:00)"])
    # both months in one ranged run (as history_job runs them): one evaluation over the run's landed window
    both = materialize(
        defs,
        resources=resources(history_dir),
        tags={RANGE_START: "2024-01-01", RANGE_END: "2024-02-01"},
        instance=DagsterInstance.ephemeral(),
    )
    run_window = "[2024-01-31 00:00, 2024-02-02 00:00)"
    assert _windows(both) == ([run_window, run_window], [run_window])  # a materialization per month
    checked = both.get_asset_check_evaluations()[0]
    assert checked.passed and checked.metadata["rows_checked"].value == len(SETTLEMENTS)


def test_a_history_step_with_nothing_landed_in_its_window_reads_nothing_and_still_clears_it(history_dir: Path) -> None:
    """Imported funding lands no tickers: history/raw_tickers' month reads no file (its metadata says no input)
    and still clears its window as any load does (a re-run is idempotent): a stale row in the window goes, a row
    outside it stays."""
    import duckdb

    with duckdb.connect(str(history_dir / "warehouse.duckdb")) as conn:
        ensure_raw_tables(conn, history_dir, "raw_tickers")
        for ts in ("2024-01-31 05:00", "2024-03-01 05:00"):  # in the landed window; after it
            conn.execute(f"INSERT INTO raw_tickers BY NAME SELECT TIMESTAMP '{ts}' AS ts, 'stale' AS exchange")
    result = materialize(
        history_assets([raw_assets.raw_tickers]), resources=resources(history_dir), partition_key="2024-01-01"
    )
    (materialization,) = result.asset_materializations_for_node("raw_tickers")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta == {
        "window": "[2024-01-31 00:00, 2024-02-01 00:00)",
        "hours": 24,
        "files": 0,
        "rows": 0,
        "input": NO_INPUT,
    }
    left = query(history_dir, "SELECT strftime(ts, '%Y-%m-%d %H:%M') AS ts FROM raw_tickers")["ts"].tolist()
    assert left == ["2024-03-01 05:00"]
    # the stream that did land reads its file
    funding = materialize(
        history_assets([raw_assets.raw_funding]), resources=resources(history_dir), partition_key="2024-01-01"
    )
    (loaded,) = funding.asset_materializations_for_node("raw_funding")
    assert (loaded.metadata["files"].value, loaded.metadata["rows"].value) == (1, 3)


@asset(partitions_def=MonthlyPartitionsDefinition(start_date="2024-01-01"))
def no_folder(context) -> None:  # noqa: ANN001 - Dagster refuses a string annotation here (future import)
    """A step on monthly partitions given no data_dir resource."""
    partition_window(context)


def test_a_history_step_without_the_data_dir_resource_is_refused_by_name(history_dir: Path) -> None:
    """A step on monthly partitions clamps its window to the data landed in its data_dir resource's folder; a step
    not given that resource fails naming itself, instead of reading the bounds of another folder."""

    result = materialize([no_folder], partition_key="2024-01-01", raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no_folder: a step on monthly partitions needs the data_dir resource" in str(failure.event_specific_data)
