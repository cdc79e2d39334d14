"""The pipeline runs itself: a real `dagster-daemon` on a temporary DAGSTER_HOME, files landed by a REST
history pull and a real MPI capture while it runs, and every asset, from the raw tables through `alerts`,
the daily tables and the backtests, materialized for the new data by the sensors alone, in dependency
order, each new hour loaded once. Asserts the warehouse's rows against the landed files, not only runs."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, RunsFilter

from fundarb_dagster.core import landing
from fundarb_dagster.core.config import load_config
from fundarb_dagster.core.units import DAY_MS, HOUR_MS
from fundarb_dagster.defs.common.landing import hour_folders
from fundarb_dagster.defs.jobs import STAGE_BY_JOB, STAGES, stage_asset_names
from fundarb_dagster.defs.partitions import Partitions, key_ms
from fundarb_dagster.defs.sensors import STREAMS, pipeline_status, run_span
from fundarb_dagster.demo import failed_steps, landed_streams, write_demo_config
from fundarb_dagster.instance import dagster_env, start_daemon, stop_daemon

START = "2026-10-30"  # FUNDARB_PARTITIONS_START: the daemon starts before anything has landed
SETTLE_TIMEOUT_S = 600.0


def _wait_settled(instance: DagsterInstance, data: Path, partitions: Partitions, daemon, log: Path) -> float:
    started, settled = time.monotonic(), 0
    while settled < 3:
        assert daemon.poll() is None, log.read_text()[-4000:]
        status = pipeline_status(instance, data, partitions)
        settled = settled + 1 if status.settled else 0
        assert time.monotonic() - started < SETTLE_TIMEOUT_S, f"not settled: {status}\n{log.read_text()[-4000:]}"
        time.sleep(3.0)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.mpi
def test_landed_files_reach_alerts_and_every_asset_with_only_the_daemon_running(tmp_path: Path, monkeypatch):
    from fundarb_dagster.core.history import pull_history
    from mpi_jobs.launcher import launch_capture

    for name in ("DAGSTER_HOME", "FUNDARB_DATA_DIR", "FUNDARB_CONFIG", "FUNDARB_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    config_path = write_demo_config(data, speed=3600.0, ranks=2)
    env = {**dagster_env(data), "FUNDARB_PARTITIONS_START": START}
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    partitions = Partitions(date.fromisoformat(START), "FUNDARB_PARTITIONS_START")
    log = tmp_path / "daemon.log"
    with log.open("w") as log_file:
        daemon = start_daemon(env, log_file)
        try:
            # Files land while the daemon runs: 30 h of REST history (opportunities need 24 h), then a capture.
            config = load_config(str(config_path))
            pull_history(config, config.sim.start_ms - 30 * HOUR_MS, config.sim.start_ms, streams=("ohlcv", "funding"))
            assert launch_capture(str(config_path), ranks=2, duration_s=6) == 0
            with DagsterInstance.get() as instance:
                waited = _wait_settled(instance, data, partitions, daemon, log)
                # One more hour, as a capture would land it: the newest hour's trades again, an hour later
                # (and the hour after, which closes it on the data's clock). It must reach alerts by itself.
                new_hour, landed_at = _land_next_hours(data), time.time()
                _wait_settled(instance, data, partitions, daemon, log)
                runs = sorted(
                    (r for stage in STAGES for r in instance.get_run_records(RunsFilter(job_name=stage.job))),
                    key=lambda r: r.create_timestamp,
                )
                failures = failed_steps(instance)
                events = instance.get_latest_materialization_events([AssetKey(n) for n in stage_asset_names()])
                raw_hours = set(instance.get_materialized_partitions(AssetKey("raw_trades")))
        finally:
            stop_daemon(daemon)
    t0 = runs[0].create_timestamp.timestamp()
    for r in runs:  # the timeline, for the delay bound in the docs (-s shows it)
        window = r.dagster_run.tags.get("fundarb/window") or r.dagster_run.tags.get("dagster/partition")
        print(
            f"{r.dagster_run.job_name:14} queued {r.create_timestamp.timestamp() - t0:6.1f} "
            f"start {r.start_time - t0:6.1f} end {r.end_time - t0:6.1f}  {window}"
        )
    print(f"settled {waited:.0f} s after the capture ended; {len(runs)} runs")

    # the new hour: loaded by one hourly_job run of its own, then alerts evaluated over it, by themselves
    def covering(job: str) -> list:
        return [r for r in runs if r.dagster_run.job_name == job and new_hour in _hours(r.dagster_run.tags)]

    assert [_hours(r.dagster_run.tags) for r in covering("hourly_job")] == [[new_hour]]
    # the first signals run over it (the next hour's run looks back 8 h and covers it again)
    signals = min(covering("signals_job"), key=lambda r: r.end_time)
    assert signals.dagster_run.status.value == "SUCCESS"
    print(f"a new hour's files reached alerts {signals.end_time - landed_at:.0f} s after they landed")

    assert failures == []
    # every asset of the graph has a materialization, and nothing was launched but by the two sensors
    assert [name for name in stage_asset_names() if events.get(AssetKey(name)) is None] == []
    assert {r.dagster_run.tags.get("fundarb/trigger", "").split(" ")[0] for r in runs} == {
        "landing_sensor",
        "pipeline_sensor",
    }
    # dependency order: every run started after a run of each stage it follows had ended
    ended: dict[str, list[float]] = {}
    for record in sorted(runs, key=lambda r: r.start_time or 0):
        stage = STAGE_BY_JOB[record.dagster_run.job_name]
        if stage.after:
            assert any(t <= record.start_time for job in stage.after for t in ended.get(job, [])), stage.job
        ended.setdefault(stage.job, []).append(record.end_time)
    # each landed hour loaded once, in order: hourly_job windows do not overlap and cover every landed hour,
    # and no two runs of a stage ran at the same time
    landed = {hour for hour, _, _ in hour_folders(data, STREAMS)}
    hours = [h for r in runs if r.dagster_run.job_name == "hourly_job" for h in _hours(r.dagster_run.tags)]
    assert len(hours) == len(set(hours)), "an hour was loaded twice"
    assert landed <= set(hours)
    assert {key_ms(k) for k in raw_hours} >= landed
    for stage in STAGES:
        spans = sorted((r.start_time, r.end_time) for r in runs if r.dagster_run.job_name == stage.job)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), stage.job
    streams = landed_streams(data)
    first = min(s[2] for name, s in streams.items() if name != "capture_stats") // HOUR_MS * HOUR_MS
    last = max(s[3] for name, s in streams.items() if name != "capture_stats") // HOUR_MS * HOUR_MS

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        # the rows: every landed trade is in raw_trades, the bars reach the newest landed minute of trades
        assert con.execute("SELECT count(*) FROM raw_trades").fetchone()[0] == streams["trades"][1]
        newest_bar = con.execute("SELECT epoch_ms(max(ts)) FROM ohlcv_1m WHERE source = 'trades'").fetchone()[0]
        assert newest_bar == streams["trades"][3] // 60_000 * 60_000
        # funding, spreads and the ranking reach the newest hour with funding; alerts were evaluated on them
        newest_funding = streams["funding"][3] // HOUR_MS * HOUR_MS
        assert con.execute("SELECT epoch_ms(max(ts)) FROM funding_spreads").fetchone()[0] >= newest_funding
        assert con.execute("SELECT epoch_ms(max(as_of)) FROM opportunities").fetchone()[0] == newest_funding
        assert con.execute("SELECT count(*) FROM opportunities").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'").fetchone()[0]
        # the days that ended on the data's clock have daily bars; both strategies were backtested
        days = {row[0] for row in con.execute("SELECT DISTINCT epoch_ms(ts) FROM ohlcv_1d").fetchall()}
        assert set(range(first // DAY_MS * DAY_MS, last // DAY_MS * DAY_MS, DAY_MS)) <= days
        strategies = {row[0] for row in con.execute("SELECT DISTINCT strategy FROM backtest_runs").fetchall()}
        assert strategies == {"cash_carry", "perp_perp"}
        assert con.execute("SELECT count(*) FROM risk_report").fetchone()[0] > 0
    finally:
        con.close()


def _land_next_hours(data: Path) -> int:
    """Land the newest hour's trades again one and two hours later (new trade ids); return the first new hour."""
    newest = max(hour for hour, _, _ in hour_folders(data, ["trades"]))
    trades = pq.read_table(sorted(landing.partition_dir(data, "trades", newest).glob("*.parquet")))
    for k in (1, 2):
        shifted = trades
        for column, offset in (("ts_ms", k * HOUR_MS), ("recv_ts_ms", k * HOUR_MS), ("trade_id", k * 10**12)):
            index = shifted.schema.get_field_index(column)
            step = pa.scalar(offset, shifted.schema.field(column).type)
            shifted = shifted.set_column(index, column, pc.add(shifted.column(column), step))
        landing.write_stream(data, "trades", shifted, "next-hour", k)
    return newest + HOUR_MS


def _hours(tags: dict[str, str]) -> list[int]:
    span = run_span(tags)
    return list(range(span[0], span[1], HOUR_MS)) if span else []
