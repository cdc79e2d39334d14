"""Helpers for the capture-job tests: configs, running the real job under mpiexec, the sim's own record."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from fundarb_dagster.core.config import load_config
from fundarb_dagster.core.schema import EventKind, StreamCode
from fundarb_dagster.core.sources.sim import SimExchange

REPO = Path(__file__).resolve().parents[2]
SEAM = Path(__file__).resolve().parent / "storage_faults"
SUBSCRIBED_TRADES = [("bybit", "BTC/USDT"), ("bybit", "BTC/USDT:USDT"), ("binance", "ETH/USDT:USDT")]
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


def run_job(
    config: Path, ranks: int, duration: float, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        job_command(config, ranks, "--duration", str(duration)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_job(config: Path, ranks: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        job_command(config, ranks),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _env(),
        start_new_session=True,
    )


# How long a job run until enough has landed may take: start-up (imports, markets, rings) is most of it on a
# loaded machine (seconds at load 10-14), so this only bounds a job that never lands enough.
ENOUGH_TIMEOUT_S = 180.0


def landed_so_far(data_dir: Path, stream: str, columns: list[str]) -> pd.DataFrame:
    """`columns` of every file of a stream landed so far, read while the job runs (files land by an atomic
    rename, so each listed file is whole)."""
    files = sorted((data_dir / "landing" / stream).glob("date=*/hour=*/*.parquet"))
    frames = [pq.read_table(path, columns=columns).to_pandas() for path in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def run_until(
    config: Path,
    ranks: int,
    enough: Callable[[Path], bool],
    timeout: float = ENOUGH_TIMEOUT_S,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The job run until `enough(data_dir)` holds on what has landed, then stopped by SIGTERM (drained, every
    emitted record landed): a test that needs N records waits for them, where a fixed `--duration` counts its
    seconds from before the watchers are ready and lands fewer the busier the machine. `timeout` bounds a job
    that never lands enough (the test then fails). `command`: what starts the job (default: mpiexec itself), e.g.
    the launcher, which forwards the signal."""
    data_dir = load_config(config).data_dir
    out, err = config.with_suffix(".stdout"), config.with_suffix(".stderr")
    with out.open("w") as stdout, err.open("w") as stderr:  # files, not pipes: nothing blocks the job's prints
        proc = subprocess.Popen(
            command or job_command(config, ranks), cwd=REPO, stdout=stdout, stderr=stderr, text=True, env=env or _env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not enough(Path(data_dir)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not enough landed in {timeout:g} s:\n{err.read_text()[-3000:]}")
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)  # to mpiexec (or the launcher), which forwards it to every rank
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), err.read_text())


@dataclass
class StorageFaults:
    """The fault-injecting storage seam (storage_faults/sitecustomize.py) for a job: its env and its log."""

    env: dict[str, str]
    log: Path

    def injected(self) -> list[str]:
        """One line per failure injected so far: '<pid> <errno> <path>'."""
        return self.log.read_text().splitlines() if self.log.exists() else []


def storage_faults(tmp_path: Path, rules: list[dict[str, Any]]) -> StorageFaults:
    plan = tmp_path / "storage_faults.json"
    log = tmp_path / "storage_faults.log"
    plan.write_text(json.dumps({"rules": rules, "log": str(log)}))
    env = {**_env(), "PYTHONPATH": str(SEAM), "FUNDARB_TEST_STORAGE_FAULTS": str(plan)}
    return StorageFaults(env, log)


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


def _filled(events: pd.DataFrame | None, exchange: str, symbol: str) -> int:
    if events is None:
        return 0
    mask = (
        (events["kind"] == int(EventKind.GAP_FILLED))
        & (events["stream"] == int(StreamCode.TRADES))
        & (events["exchange"] == exchange)
        & (events["symbol"] == symbol)
    )
    return int(events.loc[mask, "count"].sum())


def assert_trades_match_the_sim(
    config: Path,
    data_dir: Path,
    stdout: str,
    day: str | None = None,
    pairs: list[tuple[str, str]] = SUBSCRIBED_TRADES,
) -> dict[str, int]:
    """Landed trades, per symbol: exactly the sim's history over the landed range, and every emitted one
    (of one `day`, YYYY-MM-DD, when several runs captured different days into one landing zone)."""
    trades = landed(data_dir, "trades")
    events = landed(data_dir, "capture_events")
    if day is not None:
        trades = trades[trades["date"].astype(str) == day]
        events = events[events["date"].astype(str) == day] if events is not None else None
    emitted = summed(source_counts(stdout), "emitted")
    counts = {}
    for exchange, symbol in pairs:
        mine = trades[(trades["exchange"] == exchange) & (trades["symbol"] == symbol)].sort_values("ts_ms")
        assert len(mine) > 0, f"no trades landed for {exchange} {symbol}"
        assert mine["trade_id"].is_unique, f"{exchange} {symbol}: a trade landed twice"  # ids are per symbol
        expected = sim_trades(config, exchange, symbol, int(mine["ts_ms"].min()), int(mine["ts_ms"].max()))
        assert mine["trade_id"].tolist() == [int(t["id"]) for t in expected]
        assert mine["price"].tolist() == [t["price"] for t in expected]
        assert mine["amount"].tolist() == [t["amount"] for t in expected]
        assert mine["side"].tolist() == [1 if t["side"] == "buy" else -1 for t in expected]
        # Every trade the sim handed out live is landed; the rest came from gap backfills, counted as events.
        assert len(mine) == emitted[f"trades|{symbol}"] + _filled(events, exchange, symbol)
        counts[f"{exchange} {symbol}"] = len(mine)
    return counts


def assert_no_temporaries_or_unreadable_files(data_dir: Path) -> int:
    files = list((data_dir / "landing").rglob("*.parquet"))
    for path in files:
        pq.read_table(path)  # raises on a truncated or corrupt file
    return len(files)
