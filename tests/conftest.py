"""Shared test fixtures."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
MEMORY_TMP = Path("/dev/shm")  # tmpfs on Linux
MEMORY_TMP_MIN_FREE = 4 << 30  # the whole suite's temporary folders take under 1 GiB


def pytest_configure(config: pytest.Config) -> None:
    """Temporary folders (tmp_path, Dagster's test instances, the jobs' and daemons' TMPDIR) in memory where the
    machine has a tmpfs with room, unless TMPDIR or --basetemp say where: every Dagster run commits its sqlite
    event log thousands of times (4,253 commits and 5,650 closes in one day's hourly backfill, 93 of its 247 s
    profiled at load 12), each an fsync on a disk and free in memory. The same sqlite, DuckDB and Parquet
    files either way; only durability against a power cut, which no test is about, is given up."""
    if config.option.basetemp or os.environ.get("TMPDIR") or not MEMORY_TMP.is_dir():
        return
    stats = os.statvfs(MEMORY_TMP)
    room = min(stats.f_bavail * stats.f_frsize, _available_memory())  # a tmpfs may be as large as the RAM
    if not os.access(MEMORY_TMP, os.W_OK) or room < MEMORY_TMP_MIN_FREE:
        return
    os.environ["TMPDIR"] = str(MEMORY_TMP)  # subprocesses: the capture job, dagster-daemon, the webserver
    tempfile.tempdir = str(MEMORY_TMP)  # this process: pytest's tmp_path root and tempfile.* from here on


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 when it cannot be read: then the temporary folders stay on disk)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real recorded market data beside the repo (read-only: copy what a test writes to)."""
    if not FIXTURES.is_dir():
        raise FileNotFoundError(f"fixtures: {FIXTURES} is missing; fundarb's tests need ../shared/fixtures")
    return FIXTURES


@dataclass(frozen=True)
class DemoRun:
    data: Path  # the demo's data folder: landing zone, warehouse, dagster_home (copy it before writing to it)
    out: str  # what the demo printed


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`fundarb demo` at a small size, once per session: the demo's own test reads what it printed and built,
    the daemon test continues from a copy of its data (the demo is that test's first phase)."""
    from fundarb_dagster.demo import run_demo

    data = tmp_path_factory.mktemp("demo") / "data"
    out = io.StringIO()
    saved = dict(os.environ)  # the demo points DAGSTER_HOME and FUNDARB_* at its folder: keep that to itself
    try:
        for name in ("DAGSTER_HOME", "FUNDARB_DATA_DIR", "FUNDARB_CONFIG", "FUNDARB_WAREHOUSE", "FUNDARB_WEBHOOK_URL"):
            os.environ.pop(name, None)
        with contextlib.redirect_stdout(out):
            # 30 h of history: opportunities need 24 hourly observations before they rank a trade.
            code = run_demo(data, history_days=1.25, capture_seconds=6, speed=3600, ranks=2)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sys.stdout.write(out.getvalue())  # shown with -s or on a failure
    assert code == 0
    return DemoRun(data, out.getvalue())


def copy_demo(demo: DemoRun, dest: Path) -> Path:
    """A copy of the demo's data folder (landing zone, warehouse, instance) at `dest`, its config pointing there:
    a test that writes (lands files, runs a daemon or a webserver) leaves the demo's own folder as it was."""
    import yaml

    shutil.copytree(demo.data, dest)
    config_path = dest / "demo_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config_path.write_text(yaml.safe_dump({**config, "data_dir": str(dest)}, sort_keys=False))
    return dest
