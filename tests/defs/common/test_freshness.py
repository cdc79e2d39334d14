"""Freshness on the right clock: the data's own for simulated or replayed sources (a replay of last month is
fresh when it is caught up), the wall clock for a live capture; and the schedule that runs it for live only."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from dagster import AssetCheckKey, AssetSelection, DagsterInstance, build_schedule_context, materialize

from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.jobs import build_jobs
from fundarb_dagster.defs.raw.assets import RAW_ASSETS, raw_trades
from fundarb_dagster.defs.raw.checks import raw_trades_is_fresh
from fundarb_dagster.defs.resources import SourceConfigResource
from fundarb_dagster.defs.schedules import build_schedules
from tests.defs.raw.landing_fixtures import land_trades, resources

REPO = Path(__file__).resolve().parents[3]
H0 = 1_762_000_000_000 // HOUR_MS * HOUR_MS  # 2025-11-01 12:00 UTC: long past on the wall clock
KEY = AssetCheckKey(raw_trades.key, "raw_trades_is_fresh")


def _trades(hour_ms: int) -> pd.DataFrame:
    return pd.DataFrame({"ts_ms": [hour_ms + 1000], "trade_id": [hour_ms], "price": 1.0, "amount": 1.0})


def _load(instance: DagsterInstance, data: Path, hour_ms: int) -> None:
    key = pd.Timestamp(hour_ms, unit="ms").strftime("%Y-%m-%d-%H:00")
    assert materialize(RAW_ASSETS, resources=resources(data), partition_key=key, instance=instance).success


def _evaluate(instance: DagsterInstance, data: Path, config: str | None = None):
    res = {**resources(data), "source": SourceConfigResource(config_path=config or "")}
    result = materialize(
        [raw_trades, raw_trades_is_fresh], selection=AssetSelection.checks(KEY), resources=res, instance=instance
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_on_the_data_clock_every_hour_before_the_newest_landed_one_must_be_loaded(tmp_path):
    instance = DagsterInstance.ephemeral()
    for h in range(3):
        land_trades(tmp_path, _trades(H0 + h * HOUR_MS), seq=h)
    _load(instance, tmp_path, H0)
    behind = _evaluate(instance, tmp_path)
    assert not behind.passed and behind.metadata["clock"].value == "data"
    assert behind.metadata["hours_behind"].value == 1.0  # 13:00 has closed (14:00 landed) but is not loaded
    _load(instance, tmp_path, H0 + HOUR_MS)
    caught_up = _evaluate(instance, tmp_path)
    assert caught_up.passed  # months old on the wall clock, yet fresh: the replay is caught up


def test_on_the_wall_clock_a_live_capture_of_old_hours_is_stale(tmp_path):
    instance = DagsterInstance.ephemeral()
    land_trades(tmp_path, _trades(H0), seq=0)
    _load(instance, tmp_path, H0)
    evaluation = _evaluate(instance, tmp_path, str(REPO / "config" / "live.yaml"))
    assert not evaluation.passed and evaluation.metadata["clock"].value == "wall"
    expected = (time.time() * 1000 - 20 * 60_000) // HOUR_MS * HOUR_MS  # hours ended 20 minutes ago
    assert abs(evaluation.metadata["hours_behind"].value - (expected - H0 - HOUR_MS) / HOUR_MS) <= 1


def test_nothing_landed_does_not_pass(tmp_path):
    evaluation = _evaluate(DagsterInstance.ephemeral(), tmp_path)
    assert not evaluation.passed and evaluation.description == "no data landed"


def test_the_freshness_schedule_runs_for_a_live_source_only():
    (schedule,) = build_schedules(build_jobs())
    sim = build_schedule_context(resources={"source": SourceConfigResource()})
    assert "data's clock" in str(schedule(sim).skip_message)
    live = build_schedule_context(
        resources={"source": SourceConfigResource(config_path=str(REPO / "config" / "live.yaml"))},
        scheduled_execution_time=pd.Timestamp("2026-12-01T10:15:00Z").to_pydatetime(),
    )
    request = schedule(live)
    assert request.run_key == "freshness:2026-12-01T10:15"
    assert request.run_config["ops"]["alerts"]["config"]["stale_clock"] == "wall"
