"""The funding checks fail on bad tables: a rate beyond the venue cap, a row with no known interval,
duplicate keys, overlapping interval spans (real check runs on a tmp DuckDB)."""

from __future__ import annotations

import pandas as pd
from dagster import AssetSelection, materialize

from fundarb_dagster.core.sql import registered
from fundarb_dagster.defs.common.tables import ensure_tables
from fundarb_dagster.defs.funding import checks as fc
from fundarb_dagster.defs.funding.assets import FUNDING_ASSETS
from fundarb_dagster.defs.resources import connect_with_retry
from tests.defs.funding.test_funding_assets import _resources

T = pd.Timestamp("2026-01-01 08:00")


def _seed(data_dir, intervals: pd.DataFrame, rates: pd.DataFrame) -> None:
    conn = connect_with_retry(str(data_dir / "warehouse.duckdb"))
    try:
        ensure_tables(conn, "funding_intervals", "funding_rates")
        for table, frame in (("funding_intervals", intervals), ("funding_rates", rates)):
            with registered(conn, "seed", frame):
                conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM seed")
    finally:
        conn.close()


def _evaluate(data_dir, *checks) -> dict[str, tuple[bool, dict]]:
    result = materialize(
        [*FUNDING_ASSETS, *fc.FUNDING_CHECKS],
        resources=_resources(data_dir),
        selection=AssetSelection.checks(*checks),
        raise_on_error=False,
    )
    return {
        e.check_name: (e.passed, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def test_a_rate_beyond_the_cap_and_a_row_without_interval_fail_the_blocking_cap_check(tmp_path):
    intervals = pd.DataFrame(
        {
            "exchange": ["bybit", "bybit"],
            "symbol": "BTC/USDT:USDT",
            "valid_from": [T - pd.Timedelta(days=10), T - pd.Timedelta(hours=12)],
            "valid_to": [T - pd.Timedelta(hours=12), pd.NaT],
            "interval_h": [8.0, 4.0],
            "cap": [0.003, 0.002],
            "floor": [-0.003, -0.002],
            "source": "market",
        }
    )
    rates = pd.DataFrame(
        {
            "exchange": ["bybit", "bybit", "bybit", "okx"],
            "symbol": ["BTC/USDT:USDT"] * 3 + ["ETH/USDT:USDT"],
            # 0.0025 was within the old 8h cap but is beyond the 4h span's cap in force at T
            "funding_ts": [T - pd.Timedelta(days=2), T, T + pd.Timedelta(hours=4), T],
            "funding_rate": [0.0025, 0.0025, -0.001, 0.0001],
            "interval_h": [8.0, 4.0, 4.0, float("nan")],
        }
    )
    _seed(tmp_path, intervals, rates)
    got = _evaluate(tmp_path, fc.funding_rates_within_caps, fc.funding_intervals_has_no_overlaps)
    passed, meta = got["funding_rates_within_caps"]
    assert not passed
    assert meta["above_cap"] == 1 and meta["below_floor"] == 0 and meta["without_interval"] == 1
    assert got["funding_intervals_has_no_overlaps"][0]


def test_duplicate_keys_and_overlapping_spans_fail(tmp_path):
    intervals = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "BTC/USDT:USDT",
            "valid_from": [T - pd.Timedelta(days=10), T - pd.Timedelta(hours=12)],
            "valid_to": [T, pd.NaT],  # overlaps the next span
            "interval_h": [8.0, 4.0],
            "source": "reported",
        }
    )
    rates = pd.DataFrame(
        {"exchange": "bybit", "symbol": "BTC/USDT:USDT", "funding_ts": [T, T], "funding_rate": 1e-4, "interval_h": 4.0}
    )
    _seed(tmp_path, intervals, rates)
    got = _evaluate(tmp_path, fc.funding_rates_has_unique_keys, fc.funding_intervals_has_no_overlaps)
    assert got["funding_rates_has_unique_keys"] == (False, {"rows": 2, "duplicate_keys": 1})
    assert got["funding_intervals_has_no_overlaps"] == (False, {"bad_spans": 1, "rows_checked": 2})


def test_checks_over_empty_tables_warn_no_data_instead_of_passing(tmp_path):
    empty_intervals = pd.DataFrame(columns=["exchange", "symbol", "valid_from", "valid_to", "interval_h", "source"])
    _seed(tmp_path, empty_intervals, pd.DataFrame(columns=["exchange", "symbol", "funding_ts", "funding_rate"]))
    checks = (fc.funding_rates_has_unique_keys, fc.funding_intervals_has_no_overlaps, fc.funding_rates_within_caps)
    result = materialize(
        [*FUNDING_ASSETS, *fc.FUNDING_CHECKS],
        resources=_resources(tmp_path),
        selection=AssetSelection.checks(*checks),
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 3
    for evaluation in evaluations:
        assert not evaluation.passed, evaluation.check_name
        assert evaluation.severity.value == "WARN"  # a warning, not a blocking error: nothing bad was found either
        assert evaluation.description.startswith("no data"), evaluation.description
        assert evaluation.metadata["rows_checked"].value == 0
