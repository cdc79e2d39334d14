"""The capture job for real: mpiexec, watcher and flusher ranks, the simulator, Parquet in the landing zone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.schema import EventKind, StreamCode
from mpi_jobs.launcher import launch_capture

from .conftest import (
    REPO,
    SUBSCRIBED_TRADES,
    assert_no_temporaries_or_unreadable_files,
    assert_trades_match_the_sim,
    job_command,
    landed,
    run_job,
    source_counts,
    start_job,
    summed,
    wait_for_files,
    write_config,
)

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("ranks", [2, 3])
def test_sim_capture_lands_exactly_what_the_sim_emitted(tmp_path: Path, ranks: int) -> None:
    config = write_config(tmp_path)
    proc = run_job(config, ranks, duration=3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "data"
    assert len(source_counts(proc.stdout)) == ranks - 1  # one report per watcher
    counts = assert_trades_match_the_sim(config, data, proc.stdout)
    assert sum(counts.values()) > 500
    assert not list((data / "landing").rglob(f"{landing.TMP_PREFIX}*"))
    assert_no_temporaries_or_unreadable_files(data)
    # Closed candles equal the sim's history; funding rows landed for the perps.
    ohlcv = landed(data, "ohlcv")
    assert len(ohlcv) and (ohlcv["timeframe_s"] == 60).all()
    assert set(landed(data, "funding")["symbol"]) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    # capture_stats: the final sample's message counts are what the rings carried.
    stats = landed(data, "capture_stats")
    last = stats.groupby(["rank", "stream"])["messages"].max().reset_index()
    trades_total = int(last.loc[last["stream"] == int(StreamCode.TRADES), "messages"].sum())
    assert trades_total == len(landed(data, "trades"))
    assert set(last["rank"]) == set(range(1, ranks))
    assert "TOTAL" in proc.stdout and "trades" in proc.stdout


def test_sigterm_mid_run_drains_and_lands_every_emitted_record(tmp_path: Path) -> None:
    config = write_config(tmp_path, capture={"flush_interval_s": 5.0})  # most data still in memory at the signal
    proc = start_job(config, ranks=3)
    try:
        wait_for_files(tmp_path / "data", "capture_stats", timeout=60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # to mpiexec, which forwards it to every rank
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "stopped by SIGTERM" in stdout
    assert_trades_match_the_sim(config, tmp_path / "data", stdout)


def test_injected_faults_become_capture_events_and_the_job_keeps_running(tmp_path: Path) -> None:
    faults = {"disconnect_every_s": 120, "malformed_rate": 0.01, "duplicate_rate": 0.01, "out_of_order_rate": 0.01}
    config = write_config(tmp_path, sim={"seed": 11, "faults": faults})
    proc = run_job(config, 2, duration=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "data"
    reports = source_counts(proc.stdout)
    injected = summed(reports, "faults_injected")
    events = landed(data, "capture_events")
    assert events is not None

    def events_of(kind: EventKind, stream: str, symbol: str) -> int:
        mask = (events["kind"] == int(kind)) & (events["stream"] == int(schema.STREAM_CODES[stream]))
        return int(events.loc[mask & (events["symbol"] == symbol), "count"].sum())

    for _, symbol in SUBSCRIBED_TRADES:
        assert events_of(EventKind.RECONNECT, "trades", symbol) == injected.get(f"disconnect|trades|{symbol}", 0)
        assert events_of(EventKind.QUARANTINED, "trades", symbol) == injected.get(f"malformed|trades|{symbol}", 0)
        assert events_of(EventKind.DUPLICATE, "trades", symbol) >= injected.get(f"duplicate|trades|{symbol}", 0)
    assert sum(v for k, v in injected.items() if k.startswith("disconnect")) > 0
    assert sum(v for k, v in injected.items() if k.startswith("malformed")) > 0
    # Despite the faults: every landed trade is a real one, once, and gaps were backfilled to the exact history.
    assert_trades_match_the_sim(config, data, proc.stdout)
    stats = landed(data, "capture_stats")
    assert int(stats["reconnects"].max()) > 0


def test_launcher_refuses_a_bad_config_naming_field_and_value_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, capture={"flush_interval_s": -1})
    assert launch_capture(str(config)) == 2
    err = capsys.readouterr().err
    assert "capture.flush_interval_s" in err and "-1" in err
    assert not (tmp_path / "data").exists()  # nothing started, nothing written
    good = write_config(tmp_path, name="good.yaml")
    assert launch_capture(str(good), ranks=1) == 2
    assert "ranks: 1" in capsys.readouterr().err


def test_launcher_runs_the_job_streams_its_output_and_returns_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    other = tmp_path / "elsewhere"
    code = launch_capture(str(config), ranks=2, duration_s=2, data_dir=str(other))
    out = capsys.readouterr().out
    assert code == 0
    assert "[capture" in out and "TOTAL" in out
    assert len(landed(other, "trades")) > 0  # the --data-dir override reached the job
    assert not (tmp_path / "data").exists()


def test_unknown_symbol_stops_the_job_with_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, exchanges=[{"id": "bybit", "symbols": ["NOPE/USDT"]}])
    proc = run_job(config, 2, duration=2)
    assert proc.returncode == 2
    assert "NOPE/USDT" in proc.stderr and "exchanges[0].symbols" in proc.stderr


def test_job_command_is_what_the_launcher_runs() -> None:
    cmd = job_command(Path("c.yaml"), 3)
    assert cmd[1:3] == ["-n", "3"] and cmd[-2:] == ["--config", "c.yaml"]


def test_launcher_forwards_ctrl_c_to_the_job_which_drains_and_exits_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path, capture={"flush_interval_s": 5.0})
    code = f"import sys; from mpi_jobs.launcher import launch_capture; sys.exit(launch_capture({str(config)!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_files(tmp_path / "data", "capture_stats", timeout=60)
        proc.send_signal(signal.SIGINT)  # what ^C delivers to the launcher
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "stopped by SIGINT" in stdout
    assert_trades_match_the_sim(config, tmp_path / "data", stdout)
