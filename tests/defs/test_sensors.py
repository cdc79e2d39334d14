"""landing_sensor: one run per hour per file set (deterministic run key), late files re-run the hour."""

from __future__ import annotations

import os
import time

import pandas as pd
from dagster import DagsterInstance, build_sensor_context

from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.resources import DataDirResource
from fundarb_dagster.defs.sensors import LandingCursor, landing_sensor
from tests.defs.raw.landing_fixtures import land_trades

H0 = 1_762_000_000_000 // HOUR_MS * HOUR_MS  # 2025-11-01 12:00 UTC


def _trades(hour_ms: int, n: int = 3, first_id: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts_ms": hour_ms + 1000 * (1 + pd.RangeIndex(n)),
            "trade_id": first_id + pd.RangeIndex(n),
            "price": 1.0,
            "amount": 1.0,
        }
    )


def _tick(instance: DagsterInstance, data_dir, cursor: str | None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"data_dir": DataDirResource(data_dir=str(data_dir))}
    )
    result = landing_sensor(context)
    requests = list(getattr(result, "run_requests", None) or [])
    return requests, getattr(result, "cursor", None) or cursor


def test_new_files_request_one_run_per_hour_with_a_deterministic_run_key(tmp_path):
    instance = DagsterInstance.ephemeral()
    land_trades(tmp_path, _trades(H0), seq=0)
    land_trades(tmp_path, _trades(H0 + HOUR_MS), seq=1)
    requests, cursor = _tick(instance, tmp_path, None)
    assert sorted(r.partition_key for r in requests) == ["2025-11-01-12:00", "2025-11-01-13:00"]
    assert all(r.run_key.startswith(f"landing:{r.partition_key}:") for r in requests)
    assert {k.to_user_string() for k in requests[0].asset_selection} >= {"raw_trades", "raw_funding", "capture_events"}
    # the same files seen from scratch give the same run keys (so Dagster dedupes a replayed tick)
    again, _ = _tick(DagsterInstance.ephemeral(), tmp_path, None)
    assert sorted(r.run_key for r in again) == sorted(r.run_key for r in requests)
    # nothing new: no run
    requests2, cursor2 = _tick(instance, tmp_path, cursor)
    assert requests2 == []
    assert LandingCursor.parse(cursor2).digests == LandingCursor.parse(cursor).digests


def test_a_late_file_reruns_only_its_hour_with_a_new_run_key(tmp_path):
    instance = DagsterInstance.ephemeral()
    land_trades(tmp_path, _trades(H0), seq=0)
    land_trades(tmp_path, _trades(H0 + HOUR_MS), seq=1)
    first, cursor = _tick(instance, tmp_path, None)
    keys_before = {r.partition_key: r.run_key for r in first}
    time.sleep(0.02)
    land_trades(tmp_path, _trades(H0, first_id=100), writer="late", seq=0)  # another writer, same hour
    late, cursor = _tick(instance, tmp_path, cursor)
    assert [r.partition_key for r in late] == ["2025-11-01-12:00"]
    assert late[0].run_key != keys_before["2025-11-01-12:00"]
    again, _ = _tick(instance, tmp_path, cursor)
    assert again == []


def test_old_hours_outside_the_mtime_window_are_not_rescanned_but_a_late_file_is_seen(tmp_path):
    instance = DagsterInstance.ephemeral()
    land_trades(tmp_path, _trades(H0), seq=0)
    old = tmp_path / "landing" / "trades" / "date=2025-11-01" / "hour=12"
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    land_trades(tmp_path, _trades(H0 + 5 * HOUR_MS), seq=1)
    _, cursor = _tick(instance, tmp_path, None)
    parsed = LandingCursor.parse(cursor)
    assert "2025-11-01-12:00" in parsed.digests and "2025-11-01-17:00" in parsed.digests
    # the old folder's mtime is behind the cursor: a tick does not digest it again
    requests, _ = _tick(instance, tmp_path, cursor)
    assert requests == []
    land_trades(tmp_path, _trades(H0, first_id=50), writer="late", seq=0)
    requests, _ = _tick(instance, tmp_path, cursor)
    assert [r.partition_key for r in requests] == ["2025-11-01-12:00"]


def test_empty_landing_zone_skips(tmp_path):
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(), resources={"data_dir": DataDirResource(data_dir=str(tmp_path))}
    )
    result = landing_sensor(context)
    assert "no new landed files" in str(getattr(result, "skip_message", result))


def test_first_tick_skips_hours_the_cli_already_loaded(tmp_path):
    from dagster import materialize

    from fundarb_dagster.defs.raw.assets import RAW_ASSETS
    from tests.defs.raw.landing_fixtures import resources

    instance = DagsterInstance.ephemeral()
    land_trades(tmp_path, _trades(H0), seq=0)
    assert materialize(
        RAW_ASSETS, resources=resources(tmp_path), partition_key="2025-11-01-12:00", instance=instance
    ).success
    land_trades(tmp_path, _trades(H0 + HOUR_MS), seq=1)
    requests, cursor = _tick(instance, tmp_path, None)
    assert [r.partition_key for r in requests] == ["2025-11-01-13:00"]
    assert "2025-11-01-12:00" in LandingCursor.parse(cursor).digests  # remembered: a later file re-runs it


def test_downstream_hourly_assets_follow_an_updated_raw_partition(tmp_path):
    """FOLLOW_UPSTREAM: once raw partitions of an hour are materialized, the bars of that hour are requested."""
    from dagster import AssetKey, Definitions, evaluate_automation_conditions, materialize

    from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
    from fundarb_dagster.defs.raw.assets import RAW_ASSETS
    from tests.defs.raw.landing_fixtures import resources

    instance = DagsterInstance.ephemeral()
    defs_assets = Definitions(assets=[*RAW_ASSETS, ohlcv_1m, ohlcv_5m, ohlcv_1h], resources=resources(tmp_path))
    first = evaluate_automation_conditions(defs=defs_assets, instance=instance)
    assert first.total_requested == 0  # nothing upstream happened yet: no flood of historical partitions
    land_trades(tmp_path, _trades(H0), seq=0)
    assert materialize(
        RAW_ASSETS, resources=resources(tmp_path), partition_key="2025-11-01-12:00", instance=instance
    ).success
    second = evaluate_automation_conditions(defs=defs_assets, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(AssetKey("ohlcv_1m")) == {"2025-11-01-12:00"}
    # the chain is requested together (a parent that will be requested counts as updated), for that hour only
    assert second.get_requested_partitions(AssetKey("ohlcv_1h")) == {"2025-11-01-12:00"}
    assert second.get_requested_partitions(AssetKey("ohlcv_5m")) == {"2025-11-01-12:00"}


def test_a_backlog_is_requested_over_several_ticks_without_losing_hours(tmp_path, monkeypatch):
    import fundarb_dagster.defs.sensors as sensors_module

    monkeypatch.setattr(sensors_module, "MAX_RUNS_PER_TICK", 3)
    instance = DagsterInstance.ephemeral()
    for h in range(5):
        land_trades(tmp_path, _trades(H0 + h * HOUR_MS), seq=h)
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        requests, cursor = _tick(instance, tmp_path, cursor)
        seen += [r.partition_key for r in requests]
    assert sorted(seen) == [f"2025-11-01-{12 + h}:00" for h in range(5)]
