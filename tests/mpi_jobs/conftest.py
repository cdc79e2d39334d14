"""Helpers for the capture-job tests: configs, running the real job under mpiexec, the sim's own record."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from fundarb_dagster.core.config import load_config
from fundarb_dagster.core.sources.sim import SimExchange

REPO = Path(__file__).resolve().parents[2]
MPIEXEC = str(Path(sys.executable).with_name("mpiexec"))


def write_config(tmp_path: Path, name: str = "capture.yaml", **sections: Any) -> Path:
    raw: dict[str, Any] = {
        "source": "sim",
        "data_dir": str(tmp_path / "data"),
        "exchanges": [
            {"id": "bybit", "symbols": ["BTC/USDT", "BTC/USDT:USDT"]},
            {"id": "binance", "symbols": ["ETH/USDT:USDT"], "streams": ["trades", "funding", "ohlcv"]},
        ],
        "sim": {"seed": 7, "speed": 600},
        "capture": {"flush_interval_s": 0.5, "stats_interval_s": 1.0},
    }
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def job_command(config: Path, ranks: int, *extra: str) -> list[str]:
    return [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi_jobs.capture", "--config", str(config), *extra]


def run_job(config: Path, ranks: int, duration: float, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        job_command(config, ranks, "--duration", str(duration)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_job(config: Path, ranks: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        job_command(config, ranks),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def wait_for_files(data_dir: Path, stream: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((data_dir / "landing" / stream).glob("date=*/hour=*/*.parquet")):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no {stream} file landed in {timeout} s")


def source_counts(stdout: str) -> list[dict[str, Any]]:
    """The per-watcher JSON lines the job prints at exit (the sim's exact record of what it sent)."""
    prefix = "[capture] source counts "
    return [json.loads(line[len(prefix) :]) for line in stdout.splitlines() if line.startswith(prefix)]


def summed(reports: list[dict[str, Any]], counter: str) -> dict[str, int]:
    """Sum one sim counter (emitted, faults_injected, lost) over every watcher and exchange."""
    out: dict[str, int] = {}
    for report in reports:
        for counters in report["sources"].values():
            for key, n in counters.get(counter, {}).items():
                out[key] = out.get(key, 0) + n
    return out


def clock_start(stdout: str) -> float:
    for line in stdout.splitlines():
        if "clock start " in line:
            return float(line.rsplit("clock start ", 1)[1].split()[0])
    raise AssertionError("the job did not print its clock start")


def landed(data_dir: Path, stream: str) -> Any:
    """Every landed row of a stream as a pandas frame (hive columns date/hour included)."""
    root = data_dir / "landing" / stream
    if not root.exists():
        return None
    return pq.read_table(root).to_pandas()


def sim_trades(config_path: Path, exchange_id: str, symbol: str, since: int, until: int) -> list[dict[str, Any]]:
    """Trades from a fresh SimExchange with the same seed, over REST history, [since, until] inclusive."""
    config = load_config(config_path)
    # A clock far ahead of the range, so history covers it (history never reaches past the virtual clock).
    sim = SimExchange(exchange_id, config.sim, wall_start=time.time() - 30 * 86_400 / config.sim.speed)

    async def fetch() -> list[dict[str, Any]]:
        await sim.load_markets()
        out: list[dict[str, Any]] = []
        cursor = since
        while cursor <= until:
            page = await sim.fetch_trades(symbol, cursor, 1000, {"until": until + 1})
            page = [t for t in page if t["timestamp"] <= until]
            if not page:
                break
            out.extend(page)
            cursor = page[-1]["timestamp"] + 1
        return out

    return asyncio.run(fetch())


@pytest.fixture
def mpi_env() -> dict[str, str]:
    return _env()
