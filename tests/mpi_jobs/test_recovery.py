"""Storage that fails, stops that must be bounded, kills at random moments, a launcher that dies, two jobs on
one landing directory: the real MPI job every time, with storage faults injected below the flusher by the
seam in `storage_faults/` (the landing writer's file writes fail with ENOSPC/EIO while a flag file exists)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from fundarb_dagster.cli import main
from fundarb_dagster.core import landing
from fundarb_dagster.core.config import load_config
from fundarb_dagster.core.schema import EventKind
from mpi_jobs.launcher import launch_capture
from mpi_jobs.spill import spill_root

from .conftest import (
    REPO,
    assert_no_temporaries_or_unreadable_files,
    assert_trades_match_the_sim,
    clock_start,
    landed,
    run_job,
    sim_trades,
    source_counts,
    start_job,
    storage_faults,
    summed,
    wait_for_files,
    write_config,
)

pytestmark = pytest.mark.mpi
EXIT_SLACK_S = 30.0  # from the flusher's final line to mpiexec's exit, at load 10-14 (a few seconds idle)
ODD_HOURS = r"/landing/(trades|tickers|ohlcv)/date=[^/]+/hour=\d[13579]/"


def _wait_until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def _stop(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str, float]:
    """SIGTERM to mpiexec (it forwards to every rank); returns stdout, stderr and seconds until exit."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return out, err, time.monotonic() - sent


def _flush_failed_rows(data: Path) -> pd.DataFrame:
    events = landed(data, "capture_events")
    return events[events["kind"] == int(EventKind.FLUSH_FAILED)]


def _assert_tickers_landed_once_each(data: Path, stdout: str, day: str | None = None) -> None:
    tickers = landed(data, "tickers")
    if day is not None:
        tickers = tickers[tickers["date"].astype(str) == day]
    assert not tickers.duplicated(["exchange", "symbol", "ts_ms"]).any()
    emitted = summed(source_counts(stdout), "emitted")
    # No faults injected: every ticker the sim sent lands (perps' tickers also carry bybit's funding, so the
    # sim's count covers both subscriptions: the spot symbol is the clean comparison).
    spot = tickers[tickers["symbol"] == "BTC/USDT"]
    assert len(spot) == emitted["tickers|BTC/USDT"] > 0


def test_a_partial_multi_hour_failure_then_recovery_lands_every_record_exactly_once(tmp_path: Path) -> None:
    """Finding 1 and 3: odd hours fail (ENOSPC) while the even hours of the same flushes land; once the disk
    recovers, the running job lands the failed hours by itself, and every record is there exactly once."""
    failing = tmp_path / "failing"
    failing.touch()
    faults = storage_faults(tmp_path, [{"match": ODD_HOURS, "errno": "ENOSPC", "flag": str(failing)}])
    # 2 s of wall time per market hour: every flush round near an hour change spans two hours.
    config = write_config(tmp_path, sim={"speed": 1800, "trades_per_s": 1.0}, capture={"flush_interval_s": 0.5})
    data = tmp_path / "data"
    proc = start_job(config, ranks=3, env=faults.env)
    try:
        _wait_until(lambda: len({line.split("hour=")[1][:2] for line in faults.injected()}) >= 2, 90, "two odd hours")
        failed_hours = {line.split()[2].rsplit("/", 1)[0] for line in faults.injected()}
        failing.unlink()  # the disk has room again
        # The running job lands every failed hour by itself, without a restart or a stop.
        _wait_until(lambda: all(any(Path(h).glob("*.parquet")) for h in failed_hours), 60, "recovery")
        out, err, _ = _stop(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert_trades_match_the_sim(config, data, out)  # every emitted trade, by id, once
    _assert_tickers_landed_once_each(data, out)
    ohlcv = landed(data, "ohlcv")
    assert not ohlcv.duplicated(["exchange", "symbol", "timeframe_s", "ts_ms"]).any()
    # Every injected failure is one FLUSH_FAILED row, and nothing was left half-written.
    assert len(_flush_failed_rows(data)) == len(faults.injected()) > 0
    assert set(_flush_failed_rows(data)["reason"]) == {"flush:ENOSPC"}
    assert not list((data / "landing").rglob(f"{landing.TMP_PREFIX}*"))
    assert_no_temporaries_or_unreadable_files(data)


def test_sigterm_during_a_persistent_failure_exits_in_time_and_the_next_start_lands_the_spill(tmp_path: Path) -> None:
    """Finding 2: storage fails until after the stop; the job exits within capture.shutdown_timeout_s with
    exit code 75, keeps everything in a recovery file, and the next start lands it exactly once."""
    failing = tmp_path / "failing"
    failing.touch()
    faults = storage_faults(tmp_path, [{"match": "/landing/", "errno": "EIO", "flag": str(failing)}])
    timeout_s = 12.0
    config = write_config(
        tmp_path, name="day1.yaml", capture={"flush_interval_s": 0.5, "shutdown_timeout_s": timeout_s}
    )
    data = tmp_path / "data"
    proc = start_job(config, ranks=3, env=faults.env)
    try:
        _wait_until(lambda: len(faults.injected()) >= 6, 90, "failed flushes")
        out, err, took = _stop(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, err[-3000:]
    final = [line for line in out.splitlines() if "TOTAL" in line][-1]
    # The bound, on the flusher's own clock from the stop it saw (storage fails until after it: unbounded, it
    # would retry until killed); outside, mpiexec's forwarding and the ranks' exit add seconds on a loaded
    # machine, bounded generously (a job that does not stop is killed at _stop's 60 s and fails here).
    stopped_s = float(re.search(rf"stopped in ([0-9.]+) s \(bound {timeout_s:g} s\)", final).group(1))
    print(f"SIGTERM with storage failing: stopped in {stopped_s:.1f} s, exited in {took:.2f} s (bound {timeout_s:g} s)")
    assert stopped_s <= timeout_s and took <= timeout_s + EXIT_SLACK_S, (stopped_s, took)
    assert not list((data / "landing").rglob("*.parquet"))  # nothing could land
    [spill] = spill_root(data).glob("*.npz")
    assert f"records kept in {spill}" in final
    assert "records not landed, kept in recovery files that the next start lands" in out.splitlines()[-1]
    # The disk is back; the next start (another market day) lands the spill first, then captures.
    failing.unlink()
    config2 = write_config(
        tmp_path, name="day2.yaml", sim={"start": "2026-11-05T00:00:00Z"}, capture={"flush_interval_s": 0.5}
    )
    second = run_job(config2, 3, duration=2, env=faults.env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "landing" in second.stdout and "records of 1 recovery file(s)" in second.stdout
    assert not spill.exists()
    assert_trades_match_the_sim(config, data, out, day="2026-11-01")  # the stopped run's, from the spill
    assert_trades_match_the_sim(config2, data, second.stdout, day="2026-11-05")
    _assert_tickers_landed_once_each(data, out, day="2026-11-01")
    assert len(_flush_failed_rows(data)) == len(faults.injected())
    events = landed(data, "capture_events")
    assert int(events.loc[events["kind"] == int(EventKind.SPILLED), "count"].sum()) > 0


def test_a_second_capture_on_the_same_landing_directory_fails_at_once_naming_the_running_pid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    first = start_job(config, ranks=2)
    try:
        wait_for_files(tmp_path / "data", "trades")
        holder = (tmp_path / "data" / ".fundarb" / "capture.lock").read_text()
        pid = int(holder.split('"pid": ')[1].split(",")[0])
        assert "mpi_jobs.capture" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        started = time.monotonic()
        assert launch_capture(str(config), duration_s=5) == 2  # the launcher refuses before mpiexec
        err = capsys.readouterr().err
        assert f"in use by the capture job with pid {pid}" in err and time.monotonic() - started < 2
        direct = run_job(config, 2, duration=5)  # mpiexec without the launcher: the job itself refuses
        assert direct.returncode == 2 and f"pid {pid}" in direct.stderr
        # The demo would capture into it too: refused before its history pull.
        assert main(["demo", "--data-dir", str(tmp_path / "data")]) == 2
        assert f"in use by the capture job with pid {pid}" in capsys.readouterr().err
        out, err, _ = _stop(first)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, err[-3000:]


def test_the_job_stops_by_itself_and_lands_everything_when_its_launcher_is_killed(tmp_path: Path) -> None:
    """Finding 8: `fundarb capture` dies by SIGKILL (nothing forwarded); the ranks notice, drain, land and exit."""
    config = write_config(tmp_path, capture={"flush_interval_s": 5.0})
    code = f"import sys; from mpi_jobs.launcher import launch_capture; sys.exit(launch_capture({str(config)!r}))"
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    data = tmp_path / "data"
    ranks: list[int] = []
    try:
        wait_for_files(data, "capture_stats", timeout=60)
        ranks = _job_pids(launcher.pid)
        assert len(ranks) >= 4  # mpiexec, hydra's proxy and the ranks
        launcher.kill()
        launcher.wait()
        _wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in ranks), 30, "the job's exit")
    finally:
        for pid in _job_pids(launcher.pid):
            os.kill(pid, signal.SIGKILL)
    [log] = (data / ".fundarb" / "logs").glob("*.out")
    out = log.read_text()  # what the job printed after its launcher had gone
    assert "stopped by launcher pid" in out, out[-2000:]
    assert_trades_match_the_sim(config, data, out)


def _job_pids(launcher_pid: int) -> list[int]:
    """Every process below the launcher: mpiexec, hydra's proxy, the ranks (each in a session of its own)."""
    found, queue = [], [launcher_pid]
    while queue:
        children = subprocess.run(["pgrep", "-P", str(queue.pop())], capture_output=True, text=True).stdout.split()
        found += map(int, children)
        queue += map(int, children)
    return found


def _kill_job(proc: subprocess.Popen[str]) -> list[Path]:
    """SIGKILL to mpiexec and every process under it at once: no rank gets to flush or clean up. Then what the
    ranks' MPI_Finalize would have removed, their MPICH segments, is removed here (once they are gone): the
    files this job's own processes had mapped, nothing else of /dev/shm. Returns them."""
    pids = [proc.pid, *_job_pids(proc.pid)]
    segments = _mpich_segments(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: not any(map(_running, pids)), 30, "the killed job's exit")
    for path in segments:
        path.unlink(missing_ok=True)
    return segments


SHM = Path("/dev/shm")


def _mpich_segments(pids: list[int]) -> list[Path]:
    """The MPICH shared-memory segments (`/dev/shm/mpich_shm_*`, 2 MiB per node of a job) the processes have
    mapped and not yet removed: MPI_Finalize removes them, so a job killed before it leaves them behind."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:  # already gone
            continue
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[-1]
            if path.startswith(f"{SHM}/mpich_shm_") and not path.endswith("(deleted)"):
                found.add(Path(path))
    return sorted(found)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie holds no memory: its mappings are gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_a_sigkill_loop_on_one_landing_directory_leaves_whole_files_no_duplicates_no_holes(tmp_path: Path) -> None:
    """Ten SIGKILLs of the whole job at random moments (some mid-flush), each followed by a restart on the
    same landing directory: every file readable, no duplicate, each run's trades a gap-free prefix of the
    market, and the loss is at most the unflushed window."""
    rng = random.Random(16)
    data = tmp_path / "data"
    flush_s, speed = 0.3, 600
    losses, segments = [], []
    for cycle in range(10):
        # Each cycle captures a different day, so a duplicate across cycles could only be a double write.
        config = write_config(
            tmp_path,
            name=f"kill{cycle}.yaml",
            sim={"speed": speed, "start": f"2026-11-{cycle + 1:02d}T00:00:00Z"},
            capture={"flush_interval_s": flush_s},
            exchanges=[{"id": "bybit", "symbols": ["BTC/USDT"], "streams": ["trades", "tickers"]}],
        )
        before = set((data / "landing").rglob("*.parquet")) if data.exists() else set()
        proc = start_job(config, ranks=2)
        out = ""
        try:
            _wait_until(lambda: bool(set((data / "landing").rglob("*.parquet")) - before), 60, "a file")  # noqa: B023
            time.sleep(rng.uniform(0.05, 1.5))  # anywhere in the flush cycle
            killed_at = time.time()
            segments += _kill_job(proc)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert_no_temporaries_or_unreadable_files(data)
        if cycle:
            assert "took over the lock of a stopped capture job" in out  # the killed job's lock, taken over
        new = sorted(set((data / "landing" / "trades").rglob("*.parquet")) - before)
        assert new, "the run landed no trades before the kill"
        rows = pd.concat([pq.read_table(p).to_pandas() for p in new]).sort_values("ts_ms")
        expected = sim_trades(config, "bybit", "BTC/USDT", int(rows["ts_ms"].min()), int(rows["ts_ms"].max()))
        assert rows["trade_id"].tolist() == [int(t["id"]) for t in expected]  # a whole prefix: no hole, no double
        virtual_kill = load_config(config).sim.start_ms + (killed_at - clock_start(out)) * speed * 1000
        losses.append(round((virtual_kill - int(rows["ts_ms"].max())) / speed / 1000, 2))
    # A last clean start (day 11) removes the killed writers' temporaries and lands its own run completely.
    config = write_config(
        tmp_path,
        name="final.yaml",
        sim={"speed": speed, "start": "2026-11-11T00:00:00Z"},
        exchanges=[{"id": "bybit", "symbols": ["BTC/USDT"], "streams": ["trades", "tickers"]}],
    )
    final = run_job(config, 2, duration=1)
    assert final.returncode == 0, final.stderr[-3000:]
    assert not list((data / "landing").rglob(f"{landing.TMP_PREFIX}*"))
    trades = landed(data, "trades")
    assert not trades.duplicated(["exchange", "symbol", "trade_id"]).any()
    # the killed jobs left no segment behind (none found: MPICH no longer names them mpich_shm_*)
    assert segments and not [path for path in segments if path.exists()], segments
    print(f"SIGKILL x10: loss per kill, wall seconds of market data: {losses}")
    # Loss bounded by the unflushed window: one flush interval plus one flush and the machine's lag.
    assert all(wall_s < flush_s + 5.0 for wall_s in losses), losses
