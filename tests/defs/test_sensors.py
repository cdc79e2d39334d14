"""landing_sensor: complete hours -> ranged hourly_job runs (deterministic run keys, late files re-run their hour);
pipeline_sensor: each stage after the stages it reads, over their window, never while they are in flight."""

from __future__ import annotations

import os
import time
from datetime import date

import pandas as pd
from dagster import AssetKey, DagsterInstance, build_sensor_context

from fundarb_dagster.core import landing
from fundarb_dagster.core.units import DAY_MS, HOUR_MS
from fundarb_dagster.defs import sensors as sensors_module
from fundarb_dagster.defs.jobs import STAGE_BY_JOB, STAGES, build_jobs
from fundarb_dagster.defs.partitions import Partitions, hour_key
from fundarb_dagster.defs.resources import DataDirResource
from fundarb_dagster.defs.sensors import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    LandingCursor,
    PipelineCursor,
    Success,
    build_landing_sensor,
    evaluate_landing,
    plan_stages,
    run_span,
    stage_request,
)
from tests.defs.raw.landing_fixtures import land_trades

H0 = 1_762_000_000_000 // HOUR_MS * HOUR_MS  # 2025-11-01 12:00 UTC
PARTITIONS = Partitions(date(2025, 10, 1), "test")
BOUNDS = (PARTITIONS.start_ms, H0 + 1000 * HOUR_MS)
LATER = 3600.0  # seconds: every folder is quiet by then


def _trades(hour_ms: int, n: int = 3, first_id: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts_ms": hour_ms + 1000 * (1 + pd.RangeIndex(n)),
            "trade_id": first_id + pd.RangeIndex(n),
            "price": 1.0,
            "amount": 1.0,
        }
    )


def _window(request) -> tuple[str, str]:
    tags = request.tags
    if request.partition_key:
        return request.partition_key, request.partition_key
    return tags[RANGE_START_TAG], tags[RANGE_END_TAG]


def _tick(data_dir, cursor: LandingCursor | None, later: bool = False, bounds=BOUNDS, loaded=None):
    now = time.time() + (LATER if later else 0.0)
    tick = evaluate_landing(data_dir, cursor or LandingCursor(), bounds, now_s=now, already_loaded=loaded)
    return tick.requests, tick.cursor


def _landing_sensor(jobs):
    hourly, history = (next(job for job in jobs if job.name == name) for name in ("hourly_job", "history_job"))
    return build_landing_sensor(PARTITIONS, hourly, history)


# -- landing_sensor ---------------------------------------------------------------------------------------
def test_closed_hours_are_one_ranged_raw_run_and_the_newest_waits_until_quiet(tmp_path):
    for h in range(3):
        land_trades(tmp_path, _trades(H0 + h * HOUR_MS), seq=h)
    requests, cursor = _tick(tmp_path, None)
    # hours 12 and 13 closed (a later hour landed); 14 is still being written
    assert [(r.job_name, _window(r)) for r in requests] == [("hourly_job", ("2025-11-01-12:00", "2025-11-01-13:00"))]
    assert requests[0].run_key.startswith("landing:2025-11-01-12:00...2025-11-01-13:00:")
    assert "2 hours" in requests[0].tags["fundarb/window"]
    assert cursor.waiting == ["2025-11-01-14:00"]
    # the same files seen from scratch give the same run key (Dagster drops a replayed tick's duplicate)
    again, _ = _tick(tmp_path, None)
    assert [r.run_key for r in again] == [r.run_key for r in requests]
    nothing, cursor = _tick(tmp_path, cursor)
    assert nothing == []
    # once its files are quiet (the capture stopped), the last hour loads on its own
    last, cursor = _tick(tmp_path, cursor, later=True)
    assert [_window(r) for r in last] == [("2025-11-01-14:00", "2025-11-01-14:00")]
    assert cursor.waiting == []


def test_a_late_file_reruns_only_its_hour_with_a_new_run_key(tmp_path):
    for h in range(3):
        land_trades(tmp_path, _trades(H0 + h * HOUR_MS), seq=h)
    first, cursor = _tick(tmp_path, None, later=True)
    time.sleep(0.02)
    land_trades(tmp_path, _trades(H0, first_id=100), writer="late", seq=0)  # another writer, same hour
    late, cursor = _tick(tmp_path, cursor)  # closed: later hours exist, no need to wait
    assert [_window(r) for r in late] == [("2025-11-01-12:00", "2025-11-01-12:00")]
    assert late[0].run_key != first[0].run_key
    again, _ = _tick(tmp_path, cursor)
    assert again == []


def test_old_hours_outside_the_mtime_window_are_not_rescanned_but_a_late_file_is_seen(tmp_path):
    land_trades(tmp_path, _trades(H0), seq=0)
    old = tmp_path / "landing" / "trades" / "date=2025-11-01" / "hour=12"
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    land_trades(tmp_path, _trades(H0 + 5 * HOUR_MS), seq=1)
    _, cursor = _tick(tmp_path, None, later=True)
    _, cursor = _tick(tmp_path, cursor, later=True)  # one hourly_job run per tick: 17:00 on the next
    assert "2025-11-01-12:00" in cursor.digests and "2025-11-01-17:00" in cursor.digests
    requests, _ = _tick(tmp_path, cursor, later=True)
    assert requests == []
    land_trades(tmp_path, _trades(H0, first_id=50), writer="late", seq=0)
    requests, _ = _tick(tmp_path, cursor)
    assert [_window(r) for r in requests] == [("2025-11-01-12:00", "2025-11-01-12:00")]


def test_hours_apart_are_separate_runs_one_per_tick_and_a_backlog_is_cut_into_bounded_runs(tmp_path, monkeypatch):
    import fundarb_dagster.defs.sensors as sensors_module

    for h in (0, 1, 3, 4, 5, 6, 7):
        land_trades(tmp_path, _trades(H0 + h * HOUR_MS), seq=h)
    monkeypatch.setattr(sensors_module, "MAX_RUN_HOURS", 3)
    # one run per tick, in order (runs one tick requests can start together): the next waits for the next tick
    windows, cursor = [], None
    for _ in range(4):
        requests, cursor = _tick(tmp_path, cursor, later=True)
        assert len(requests) <= 1
        windows += [_window(r) for r in requests]
    assert windows == [
        ("2025-11-01-12:00", "2025-11-01-13:00"),
        ("2025-11-01-15:00", "2025-11-01-17:00"),
        ("2025-11-01-18:00", "2025-11-01-19:00"),
    ]


def test_hours_before_the_partitions_start_wait_and_load_once_it_moves_back(tmp_path):
    land_trades(tmp_path, _trades(H0), seq=0)
    land_trades(tmp_path, _trades(H0 + DAY_MS), seq=1)
    late_start = (H0 + 12 * HOUR_MS, BOUNDS[1])  # the start is 2025-11-02 00:00: the first hour is before it
    requests, cursor = _tick(tmp_path, None, later=True, bounds=late_start)
    assert [_window(r) for r in requests] == [("2025-11-02-12:00", "2025-11-02-12:00")]
    assert cursor.before_start == "2025-11-01-12:00"
    requests, cursor = _tick(tmp_path, cursor, later=True, bounds=late_start)
    assert requests == []
    # the code location reloads with an earlier start (FUNDARB_PARTITIONS_START, or the first landed day)
    requests, cursor = _tick(tmp_path, cursor, later=True)
    assert [_window(r) for r in requests] == [("2025-11-01-12:00", "2025-11-01-12:00")]
    assert cursor.before_start == ""


def test_first_tick_skips_hours_the_cli_already_loaded(tmp_path):
    land_trades(tmp_path, _trades(H0), seq=0)
    land_trades(tmp_path, _trades(H0 + HOUR_MS), seq=1)
    requests, cursor = _tick(tmp_path, None, later=True, loaded={"2025-11-01-12:00"})
    assert [_window(r) for r in requests] == [("2025-11-01-13:00", "2025-11-01-13:00")]
    assert "2025-11-01-12:00" in cursor.digests  # remembered: a later file re-runs it


def test_the_sensor_targets_hourly_job_and_skips_an_empty_landing_zone(tmp_path):
    jobs = build_jobs()
    sensor = _landing_sensor(jobs)
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(), resources={"data_dir": DataDirResource(data_dir=str(tmp_path))}
    )
    assert {job.name for job in sensor.jobs} == {"hourly_job", "history_job"}
    result = sensor(context)
    assert "no new complete hours" in str(getattr(result, "skip_message", result))
    land_trades(tmp_path, _trades(H0), seq=0)
    land_trades(tmp_path, _trades(H0 + HOUR_MS), seq=1)
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(), resources={"data_dir": DataDirResource(data_dir=str(tmp_path))}
    )
    result = sensor(context)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [("hourly_job", "2025-11-01-12:00")]


def test_first_tick_skips_the_hours_history_job_loaded(tmp_path, monkeypatch):
    """A warehouse loaded by `fundarb backfill` (history months, then hours) is not reloaded hour by hour when
    the daemon starts: the hours of a month history_job materialized count as loaded if their files were there
    when it ran (a month is loaded while still partial); later hours, in it or after it, load as usual."""
    from dagster import AssetMaterialization

    jobs = build_jobs()
    sensor = _landing_sensor(jobs)
    for i, hour in enumerate((0, 1)):  # two hours on 2025-11-01
        land_trades(tmp_path, _trades(H0 + hour * HOUR_MS), seq=i)
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        AssetMaterialization(AssetKey(["history", "raw_trades"]), partition="2025-11-01")
    )
    later = time.time() + 60
    for i, hour in enumerate((2, 30 * 24)):  # an hour of the same month and one of December, landed after
        land_trades(tmp_path, _trades(H0 + hour * HOUR_MS), seq=2 + i)
        os.utime(landing.partition_dir(tmp_path, "trades", H0 + hour * HOUR_MS), (later, later))
    context = build_sensor_context(instance=instance, resources={"data_dir": DataDirResource(data_dir=str(tmp_path))})
    walks = []
    original = sensors_module.hour_folders
    monkeypatch.setattr(sensors_module, "hour_folders", lambda *a: walks.append(a) or original(*a))
    result = sensor(context)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [("hourly_job", "2025-11-01-14:00")]
    assert len(walks) == 1  # the loaded hours and the tick share one walk of the landing zone


def test_first_landed_hours_names_the_stream_of_imported_day_files(tmp_path):
    """A stream landed as day files (an import) has its first hour under its own name, as one of hour folders:
    the day folder stands for the day's hours (its parent is the stream, not the landing root)."""
    from fundarb_dagster.core import schema
    from fundarb_dagster.defs.jobs import Stage
    from fundarb_dagster.defs.sensors import first_landed_hours, list_landed
    from tests.defs.raw.landing_fixtures import NAMES

    records = schema.empty("trades", 2)
    records["ts_ms"] = [H0 + 30 * HOUR_MS, H0 + 31 * HOUR_MS]  # 2025-11-02 18:00, a day file
    landing.write_days(tmp_path, "trades", schema.to_arrow("trades", records, NAMES), "import-a")
    land_trades(tmp_path, _trades(H0 + 40 * HOUR_MS), seq=0)  # an hour folder the day after
    stage = Stage("x_job", ("raw_trades",), "hour", "a stage needing trades", needs_streams=("trades",))
    day_start = (H0 + 30 * HOUR_MS) // DAY_MS * DAY_MS
    assert first_landed_hours(tmp_path, [stage]) == {"trades": day_start}
    assert first_landed_hours(tmp_path, [stage], listing=list_landed(tmp_path)) == {"trades": day_start}


# -- pipeline_sensor ----------------------------------------------------------------------------------------
def _span(first_h: int, hours: int) -> tuple[int, int]:
    return (H0 + first_h * HOUR_MS, H0 + (first_h + hours) * HOUR_MS)


def _plan(cursor, successes, event_id, in_flight=()):
    return plan_stages(cursor, successes, event_id, set(in_flight), BOUNDS)


def _by_job(requests):
    return {r.job_name: _window(r) if (r.partition_key or RANGE_START_TAG in r.tags) else None for r in requests}


def test_an_hourly_run_requests_signals_from_8_hours_earlier_and_keeps_its_day_until_the_day_ends():
    requests, cursor = _plan(PipelineCursor(), [Success("hourly_job", _span(0, 3), "h1")], 7)
    assert _by_job(requests) == {"signals_job": ("2025-11-01-04:00", "2025-11-01-14:00")}
    assert requests[0].run_key == "signals_job:2025-11-01-04:00...2025-11-01-14:00:7"
    assert "11 hours" in requests[0].tags["fundarb/window"]
    assert cursor.clock_ms == H0 + 3 * HOUR_MS and cursor.event_id == 7
    # the day has not ended on the data's clock: daily_job waits for it in the cursor
    assert cursor.pending == {"daily_job": [(H0 - 12 * HOUR_MS, H0 + 12 * HOUR_MS)]}


def test_a_stage_waits_while_what_it_reads_is_in_flight_and_merges_the_windows_that_came_meanwhile():
    cursor = PipelineCursor()
    requests, cursor = _plan(cursor, [Success("hourly_job", _span(0, 1), "h1")], 3, in_flight={"hourly_job"})
    assert requests == []  # another hourly run is queued or running: signals wait for it
    assert set(cursor.pending) == {"signals_job", "daily_job"}
    requests, cursor = _plan(cursor, [Success("hourly_job", _span(1, 1), "h2")], 4)
    assert _by_job(requests) == {"signals_job": ("2025-11-01-04:00", "2025-11-01-13:00")}
    # and a stage never runs beside a run of its own job
    requests, cursor = _plan(cursor, [Success("hourly_job", _span(2, 1), "h3")], 5, in_flight={"signals_job"})
    assert requests == []
    assert cursor.pending["signals_job"] == [(H0 - 6 * HOUR_MS, H0 + 3 * HOUR_MS)]


def test_a_day_that_ends_on_the_data_clock_runs_daily_then_funding_then_signals_then_one_backtest_per_strategy():
    day = H0 - 12 * HOUR_MS  # 2025-11-01 00:00
    cursor = PipelineCursor(clock_ms=H0 + 12 * HOUR_MS)  # loaded up to the end of the day
    requests, cursor = _plan(cursor, [Success("hourly_job", (day + 23 * HOUR_MS, day + DAY_MS), "h1")], 10)
    assert _by_job(requests) == {"signals_job": ("2025-11-01-15:00", "2025-11-01-23:00")}
    requests, cursor = _plan(cursor, [Success("signals_job", (day, day + DAY_MS), "s0")], 11)
    assert requests == []  # the clock's last hour is in that day: it has not ended
    first_hour = (day + DAY_MS, day + DAY_MS + HOUR_MS)
    requests, cursor = _plan(cursor, [Success("hourly_job", first_hour, "h2")], 12)
    # the day has ended: daily_job runs; the new hour's signals wait for the day's refresh
    assert _by_job(requests) == {"daily_job": ("2025-11-01", "2025-11-01")}
    assert cursor.pending["daily_job"] == [(day + DAY_MS, day + 2 * DAY_MS)]  # the new day is not over yet
    requests, cursor = _plan(cursor, [], 12, in_flight={"daily_job"})
    assert requests == []
    requests, cursor = _plan(cursor, [Success("daily_job", (day, day + DAY_MS), "d1")], 13)
    # the fetched history refreshes the day's funding
    assert _by_job(requests) == {"funding_job": ("2025-11-01-00:00", "2025-11-01-23:00")}
    assert "backtests_job" in cursor.pending  # waits: funding and signals come first
    requests, cursor = _plan(cursor, [], 13, in_flight={"funding_job"})
    assert requests == []
    requests, cursor = _plan(cursor, [Success("funding_job", (day, day + DAY_MS), "f1")], 14)
    # one signals run for the day and the new hour together
    assert _by_job(requests) == {"signals_job": ("2025-10-31-16:00", "2025-11-02-00:00")}
    requests, cursor = _plan(cursor, [Success("signals_job", (day, first_hour[1]), "s1")], 15)
    assert {r.job_name for r in requests} == {"backtests_job"}
    # one run per strategy partition: each strategy keeps its own backtest materializations
    assert {r.partition_key for r in requests} == {"cash_carry", "perp_perp"}
    assert len({r.run_key for r in requests}) == 2
    assert cursor.pending == {"daily_job": [(day + DAY_MS, day + 2 * DAY_MS)]}


def test_the_cursor_round_trips_and_run_spans_come_from_partition_tags():
    cursor = PipelineCursor(5, H0, {"bars_job": [_span(0, 2)]})
    assert PipelineCursor.parse(cursor.dump()) == cursor
    assert run_span({"dagster/partition": hour_key(H0)}) == _span(0, 1)
    assert run_span({RANGE_START_TAG: "2025-11-01", RANGE_END_TAG: "2025-11-02"}) == (
        H0 - 12 * HOUR_MS,
        H0 + 36 * HOUR_MS,
    )
    assert run_span({}) is None
    assert run_span({"dagster/partition": "cash_carry"}) is None  # a backtest's strategy has no time window


def test_the_trader_s_hours_run_the_execution_stage_from_its_first_fill_on_with_the_live_book():
    fills_from = H0 + 2 * HOUR_MS
    hourly = Success("hourly_job", _span(0, 4), "h1")
    requests, cursor = plan_stages(PipelineCursor(), [hourly], 7, set(), BOUNDS, first_landed={"fills": fills_from})
    assert _by_job(requests) == {
        "signals_job": ("2025-11-01-04:00", "2025-11-01-15:00"),
        "execution_job": ("2025-11-01-14:00", "2025-11-01-15:00"),  # the hours from the first fill on
    }
    assert "execution_job" not in cursor.pending
    # before the trader's first fill, or with no trader at all, the stage is never requested nor kept waiting
    for first in ({"fills": H0 + 10 * HOUR_MS}, {}):
        requests, cursor = plan_stages(PipelineCursor(), [hourly], 7, set(), BOUNDS, first_landed=first)
        assert {r.job_name for r in requests} == {"signals_job"} and "execution_job" not in cursor.pending
    # the job itself evaluates the live book; the daily backtests evaluate their own
    jobs = {job.name: job for job in build_jobs()}
    assert jobs["execution_job"].config == {"ops": {"risk": {"config": {"book": "live"}}}}
    assert jobs["backtests_job"].config == {"ops": {"risk": {"config": {"book": "backtest"}}}}


def test_every_asset_of_the_graph_runs_in_a_stage_and_only_refreshes_repeat_one():
    from fundarb_dagster.definitions import all_assets

    keys = sorted(k.to_user_string() for a in all_assets for k in a.keys)
    staged = sorted({name for stage in STAGES for name in stage.assets})
    assert staged == keys
    by_job = {stage.job: set(stage.assets) for stage in STAGES}
    # funding_job refreshes hourly_job's funding tables; the live book's risk repeats the backtests' assets
    assert by_job["funding_job"] < by_job["hourly_job"]
    repeated = {name for name in keys if sum(name in assets for assets in by_job.values()) > 1}
    assert repeated == by_job["funding_job"] | {"risk_report", "risk_stress"}


def test_imported_days_load_by_the_month_in_order_and_the_newest_day_by_hour(tmp_path, monkeypatch):
    import fundarb_dagster.defs.sensors as sensors_module
    from tests.defs.raw.test_raw_assets import _import_funding

    day0 = H0 // DAY_MS * DAY_MS - 2 * DAY_MS  # 2025-10-30: two days of October, three of November
    _import_funding(tmp_path, 5 * 24, day0)
    monkeypatch.setattr(sensors_module, "HISTORY_RUN_MONTHS", 1)
    requests, cursor = _tick(tmp_path, None, later=True)
    # October (a run's most here) by the month; November waits for it
    assert [(r.job_name, _window(r)) for r in requests] == [("history_job", ("2025-10-01", "2025-10-01"))]
    assert "month)" in requests[0].tags["fundarb/window"] and len(cursor.waiting) == 3 * 24
    requests, cursor = _tick(tmp_path, cursor, later=True)
    # November: the month holding its imported days before the newest landed day (still partial: loaded as far
    # as it has landed); the newest day waits
    assert [(r.job_name, _window(r)) for r in requests] == [("history_job", ("2025-11-01", "2025-11-01"))]
    assert len(cursor.waiting) == 24
    requests, cursor = _tick(tmp_path, cursor, later=True)
    # the newest landed day goes the live path's way, hour by hour
    assert [(r.job_name, _window(r)) for r in requests] == [
        ("hourly_job", (hour_key(day0 + 4 * DAY_MS), hour_key(day0 + 5 * DAY_MS - HOUR_MS)))
    ]
    assert _tick(tmp_path, cursor, later=True)[0] == []  # loaded once
    # a run holds up to HISTORY_RUN_MONTHS months: both in one
    monkeypatch.setattr(sensors_module, "HISTORY_RUN_MONTHS", 12)
    requests, cursor = _tick(tmp_path, None, later=True)
    assert [(r.job_name, _window(r)) for r in requests] == [("history_job", ("2025-10-01", "2025-11-01"))]
    assert "(2 months)" in requests[0].tags["fundarb/window"]
    # without history days (the old way) the same files are hourly runs
    requests = evaluate_landing(tmp_path, LandingCursor(), BOUNDS, now_s=time.time() + LATER, history_days=False)
    assert {r.job_name for r in requests.requests} == {"hourly_job"}


def test_captured_hours_and_the_hours_before_imported_days_load_first_by_hour(tmp_path):
    from tests.defs.raw.test_raw_assets import _import_funding

    rows = _import_funding(tmp_path, 72)  # three imported days
    day0 = rows[0][0] - 2
    land_trades(tmp_path, _trades(day0 + DAY_MS + 5 * HOUR_MS), seq=0)  # a captured hour inside the second day
    land_trades(tmp_path, _trades(day0 - 2 * HOUR_MS), seq=1)  # and one before the import
    requests, cursor = _tick(tmp_path, None, later=True)
    assert [(r.job_name, _window(r)) for r in requests] == [
        ("hourly_job", (hour_key(day0 - 2 * HOUR_MS), hour_key(day0 - 2 * HOUR_MS)))
    ]
    requests, cursor = _tick(tmp_path, cursor, later=True)
    # only the first day is purely imported (the second holds a capture's hour folder): its month, then the
    # other hours of the month (the capture's day, the newest day) hour by hour after it
    assert [(r.job_name, _window(r)) for r in requests] == [("history_job", ("2025-11-01", "2025-11-01"))]
    requests, cursor = _tick(tmp_path, cursor, later=True)
    assert [(r.job_name, _window(r)) for r in requests] == [
        ("hourly_job", (hour_key(day0 + DAY_MS), hour_key(day0 + 3 * DAY_MS - HOUR_MS)))
    ]


def test_a_stage_run_request_carries_its_stages_config():
    # a run request's config replaces the job's: without it execution_job's risk judged the backtest's book
    for job in ("execution_job", "hourly_job"):
        request = stage_request(job, (0, 3 * HOUR_MS), "hour", "key", {})
        assert request.run_config == STAGE_BY_JOB[job].config, job
    assert STAGE_BY_JOB["execution_job"].config == {"ops": {"risk": {"config": {"book": "live"}}}}
