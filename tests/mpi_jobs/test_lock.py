"""One capture job per landing directory, and the stop flag that follows the launcher (no MPI needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mpi_jobs.control import StopFlag, process_start_time
from mpi_jobs.lock import CaptureBusy, CaptureLock, lock_holder, lock_path


def test_a_held_lock_refuses_a_second_job_naming_the_holder(tmp_path: Path) -> None:
    first = CaptureLock(tmp_path)
    assert first.acquire() == {}
    assert f"pid {os.getpid()}" in (lock_holder(tmp_path) or "")
    with pytest.raises(CaptureBusy, match=f"in use by the capture job with pid {os.getpid()}"):
        CaptureLock(tmp_path).acquire()
    first.release()
    assert lock_holder(tmp_path) is None
    again = CaptureLock(tmp_path)
    assert again.acquire() == {}  # a released lock names nobody: nothing to take over
    again.release()


def test_a_lock_left_by_a_killed_job_is_taken_over_and_named(tmp_path: Path) -> None:
    # A separate process takes the lock and is killed: the kernel drops its flock, its record stays.
    code = (
        "import sys, time; from mpi_jobs.lock import CaptureLock; lock = CaptureLock(sys.argv[1]); lock.acquire(); "
        "print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert f"pid {holder.pid}" in (lock_holder(tmp_path) or "")
        with pytest.raises(CaptureBusy):
            CaptureLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads(lock_path(tmp_path).read_text())["pid"] == holder.pid  # stale, not held
    assert lock_holder(tmp_path) is None
    lock = CaptureLock(tmp_path)
    assert lock.acquire()["pid"] == holder.pid
    assert json.loads(lock_path(tmp_path).read_text())["pid"] == os.getpid()
    lock.release()


def test_the_stop_flag_trips_when_the_launcher_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_start_time(child.pid)  # an identity: pid and start time
        stop = StopFlag(child.pid)
        assert not stop.poll(force=True)
    finally:
        child.kill()
        child.wait()
    assert stop.poll(force=True) and stop.signal == signal.SIGHUP
    assert stop.describe() == f"launcher pid {child.pid} has gone"
    assert not StopFlag(None).poll(force=True)  # started without a launcher: only signals stop it
