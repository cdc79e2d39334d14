"""The flusher rank's loop without MPI (rings on plain buffers): the pending bound, the data's clock, the
bounded stop that spills, and the exact count when even the recovery file cannot be written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.config import CaptureConfig, default_config
from mpi_jobs.control import EVENT_RING_RECORDS, EXIT_ERROR, EXIT_OK, EXIT_SPILLED, RING_STREAMS, StopFlag
from mpi_jobs.flusher_loop import FlusherLoop
from mpi_jobs.ring import Ring

T0 = 1_793_491_200_000  # 2026-11-01T00:00Z
NAMES = {0: ("bybit", "BTC/USDT")}


def _loop(tmp_path: Path, source: str = "sim", **capture: object) -> FlusherLoop:
    config = default_config(data_dir=str(tmp_path), source=source, capture=CaptureConfig(**capture))  # type: ignore[arg-type]
    rings = {
        (1, s): Ring(schema.dtype_of(s), EVENT_RING_RECORDS if s == "capture_events" else 4096) for s in RING_STREAMS
    }
    return FlusherLoop(config, rings, StopFlag(), node_index=0, writer="h-0", names=NAMES)


def _trades(n: int, start: int = 0) -> np.ndarray:
    records = schema.empty("trades", n)
    records["ts_ms"] = T0 + 1000 * np.arange(start, start + n)
    records["recv_ts_ms"] = records["ts_ms"] + 7
    records["trade_id"] = np.arange(start, start + n)
    records["price"], records["amount"] = 100.0, 1.0
    return records


def test_past_the_pending_bound_the_rings_keep_the_records_until_the_watcher_stops(tmp_path: Path) -> None:
    loop = _loop(tmp_path, max_pending_records=100)
    ring = loop.rings[(1, "trades")]
    ring.push(_trades(500))
    assert loop.drain(take_all=False) == 100 and len(ring) == 400  # the ring fills: the watcher waits or drops
    assert loop.drain(take_all=False) == 0
    ring.mark_stopping()  # the watcher's last hand-over: everything is taken, whatever the bound
    assert loop.drain(take_all=False) == 400 and loop.flusher.pending() == 500


@pytest.mark.parametrize(("source", "expected"), [("sim", T0 + 299_007), ("live", None)])
def test_capture_stats_are_stamped_with_the_data_clock_unless_live(
    tmp_path: Path, source: str, expected: int | None
) -> None:
    loop = _loop(tmp_path, source=source)
    loop.rings[(1, "trades")].push(_trades(300))
    loop.drain()
    rows = loop.sample_stats()
    if expected is None:
        assert abs(int(rows["ts_ms"][0]) - loop.clock_ms()) < 5_000 and rows["ts_ms"][0] > T0 + 86_400_000
    else:
        assert set(rows["ts_ms"].tolist()) == {expected}  # the newest receive time drained: the sim's clock


def _disk_fails(monkeypatch: pytest.MonkeyPatch, match: str) -> list[Path]:
    failed: list[Path] = []
    real = landing.write_atomic

    def write_atomic(path: Path, write: object) -> Path:
        if match in path.as_posix():
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path, write)  # type: ignore[arg-type]

    monkeypatch.setattr(landing, "write_atomic", write_atomic)
    return failed


def test_a_stop_with_failing_storage_spills_and_when_that_fails_says_exactly_what_was_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = _loop(tmp_path)
    loop.shutdown_timeout_s = 2.5  # the loop's own bound, shortened for the test (0.5 s of landing attempts)
    failed = _disk_fails(monkeypatch, str(tmp_path))  # the landing zone and the recovery folder alike
    for ring in loop.rings.values():
        ring.close()  # the watcher has stopped: the loop goes straight to its final landing
    loop.flusher.add("trades", _trades(1234))
    outcome = loop.run()
    stats_rows = len(schema.MARKET_STREAMS)  # one capture_stats row per market stream of the one watcher
    flush_failed_rows = len(failed) - 1  # every failed file write, but the failed recovery file
    assert outcome.code == EXIT_ERROR and outcome.spilled == 0
    assert outcome.lost == 1234 + stats_rows + flush_failed_rows


def test_a_stop_with_failing_storage_keeps_everything_in_a_recovery_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = _loop(tmp_path)
    loop.shutdown_timeout_s = 2.5
    _disk_fails(monkeypatch, "/landing/")
    for ring in loop.rings.values():
        ring.close()
    loop.flusher.add("trades", _trades(1234))
    outcome = loop.run()
    assert outcome.code == EXIT_SPILLED and outcome.lost == 0 and outcome.spilled > 1234
    assert f"{outcome.spilled:,} records kept in" in capsys.readouterr().out.splitlines()[-1]
    monkeypatch.undo()
    again = _loop(tmp_path)
    for ring in again.rings.values():
        ring.close()
    assert again.run().code == EXIT_OK
    # and one SPILLED row per stream kept (trades, capture_stats, capture_events)
    assert again.flusher.recovered == outcome.spilled + 3
