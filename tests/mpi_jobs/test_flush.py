"""The flusher: pending records -> hourly Parquet files, atomically, with sequences that survive restarts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fundarb_dagster.core import landing, schema
from mpi_jobs.flush import Flusher, read_landed

HOUR = landing.HOUR_MS
T0 = 1_793_491_200_000  # 2026-11-01T00:00Z
NAMES = {0: ("bybit", "BTC/USDT:USDT"), 1: ("binance", "ETH/USDT")}


def _trades(ts: np.ndarray, first_id: int = 0) -> np.ndarray:
    records = schema.empty("trades", len(ts))
    records["ts_ms"] = ts
    records["recv_ts_ms"] = ts + 5
    records["trade_id"] = np.arange(first_id, first_id + len(ts))
    records["instrument_id"] = np.arange(len(ts)) % 2
    records["price"] = 100 + np.arange(len(ts)) / 10
    records["amount"] = 0.5
    records["side"] = 1
    return records


def _tickers(ts: int) -> np.ndarray:
    records = schema.empty("tickers", 1)
    records["ts_ms"] = records["recv_ts_ms"] = ts
    records["bid"], records["ask"] = 100.0, 100.5
    return records


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_flush_writes_one_file_per_event_hour_with_every_record(tmp_path: Path) -> None:
    flusher = Flusher(tmp_path, "node0-0", NAMES)
    ts = np.concatenate([T0 + np.arange(0, HOUR, 600_000), T0 + HOUR + np.arange(0, 1000, 100)])
    expected = _trades(ts)
    flusher.add("trades", expected[:4])
    flusher.add("trades", expected[4:])
    result = flusher.flush()
    assert result.records == {"trades": len(ts)}
    assert sorted(p.relative_to(tmp_path / "landing").as_posix() for p in result.files) == [
        "trades/date=2026-11-01/hour=00/node0-0-00000000.parquet",
        "trades/date=2026-11-01/hour=01/node0-0-00000000.parquet",
    ]
    landed = read_landed(tmp_path, "trades")
    landed.sort(order="trade_id")
    assert landed.tobytes() == expected.tobytes()
    table = pq.read_table(result.files[0])
    assert set(table.column("exchange").to_pylist()) == {"bybit", "binance"}
    assert flusher.pending() == 0


def test_sequence_continues_after_a_restart_and_stale_temporaries_are_removed(tmp_path: Path) -> None:
    first = Flusher(tmp_path, "node0-0", NAMES)
    for i in range(3):
        first.add("trades", _trades(np.array([T0 + i]), first_id=i))
        first.flush()
    # A crashed predecessor's temporary next to the finished files.
    tmp = landing.partition_dir(tmp_path, "trades", T0) / f"{landing.TMP_PREFIX}node0-0-00000003.parquet.999"
    tmp.write_bytes(b"half a file")
    again = Flusher(tmp_path, "node0-0", NAMES)
    assert again.stale_removed == 1 and not tmp.exists()
    assert again.seq == 3
    again.add("trades", _trades(np.array([T0 + 10]), first_id=10))
    names = [p.name for p in again.flush().files]
    assert names == ["node0-0-00000003.parquet"]
    assert len(read_landed(tmp_path, "trades")) == 4


def test_flush_is_due_after_the_interval_or_when_an_event_hour_closes(tmp_path: Path) -> None:
    clock = FakeClock()
    flusher = Flusher(tmp_path, "w", NAMES, flush_interval_s=2.0, clock=clock)
    assert not flusher.due()
    clock.now = 5.0
    assert not flusher.due()  # nothing pending: nothing to write
    flusher.add("trades", _trades(np.array([T0 + HOUR - 10])))
    assert flusher.due()
    flusher.flush()
    clock.now = 5.5
    flusher.add("trades", _trades(np.array([T0 + HOUR + 1])))
    assert not flusher.due()  # same hour as its own first record, interval not over
    flusher.add("trades", _trades(np.array([T0 + 2 * HOUR + 1])))
    assert flusher.due()  # the pending records now reach into the next hour


def test_streams_flush_together_under_one_sequence_number(tmp_path: Path) -> None:
    flusher = Flusher(tmp_path, "w", NAMES)
    events = schema.empty("capture_events", 2)
    events["ts_ms"] = T0
    events["instrument_id"] = [0, -1]
    events["kind"] = int(schema.EventKind.RECONNECT)
    events["reason"] = [b"socket closed", b""]
    stats = schema.empty("capture_stats", 1)
    stats["ts_ms"] = T0
    flusher.add("capture_events", events)
    flusher.add("capture_stats", stats)
    flusher.add("trades", _trades(np.array([T0])))
    result = flusher.flush()
    assert {p.name for p in result.files} == {"w-00000000.parquet"}
    assert result.records == {"trades": 1, "capture_events": 2, "capture_stats": 1}
    landed = read_landed(tmp_path, "capture_events")
    assert sorted(landed["reason"].tolist()) == [b"", b"socket closed"]
    assert pq.read_table(landing.partition_dir(tmp_path, "capture_events", T0) / "w-00000000.parquet").column(
        "exchange"
    ).to_pylist() == ["bybit", None]


def test_a_failed_write_keeps_records_pending_and_the_retry_writes_them_once(tmp_path: Path) -> None:
    clock = FakeClock()
    flusher = Flusher(tmp_path, "w", NAMES, clock=clock)
    records = _trades(T0 + np.arange(10))
    flusher.add("trades", records)
    blocker = tmp_path / "landing" / "trades"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the stream folder should be")  # every write below it fails
    result = flusher.flush()
    assert [f.stream for f in result.failures] == ["trades"] and not result.files
    assert flusher.pending("trades") == 10
    blocker.unlink()
    clock.now += flusher.flush_interval_s
    result = flusher.flush()
    assert result.records == {"trades": 10, "capture_events": 1}  # and the event that counted the failure
    assert read_landed(tmp_path, "trades").tobytes() == records.tobytes()


class StorageFault:
    """Fails every landing write whose path matches, with an errno, while `on`; counts what it failed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, match: str, code: int = errno.ENOSPC) -> None:
        self.match, self.code, self.on, self.injected = match, code, True, 0
        real = landing.write_parquet_atomic

        def write(table: object, path: Path, *args: object, **kwargs: object) -> Path:
            if self.on and self.match in path.as_posix():
                self.injected += 1
                raise OSError(self.code, os.strerror(self.code), str(path))
            return real(table, path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(landing, "write_parquet_atomic", write)


def _failed_events(tmp_path: Path) -> np.ndarray:
    events = read_landed(tmp_path, "capture_events")
    return events[events["kind"] == int(schema.EventKind.FLUSH_FAILED)]


def test_a_partial_multi_hour_flush_never_wedges_and_lands_every_record_once(tmp_path: Path, monkeypatch) -> None:
    """Hour 00 lands, hour 01 fails (ENOSPC): 00 is recorded at once, 01 alone is retried, also after the
    fault is gone; a later hour and another stream land meanwhile; nothing is written twice."""
    clock = FakeClock()
    flusher = Flusher(tmp_path, "w", NAMES, flush_interval_s=2.0, clock=clock, event_clock_ms=lambda: T0 + 5 * HOUR)
    fault = StorageFault(monkeypatch, "trades/date=2026-11-01/hour=01/")
    trades = _trades(np.concatenate([T0 + np.arange(0, HOUR, HOUR // 4), T0 + HOUR + np.arange(5)]))
    flusher.add("trades", trades)
    first = flusher.flush()
    assert [p.parent.name for p in first.files] == ["hour=00"]
    assert [(f.stream, f.hour_ms, f.error) for f in first.failures] == [("trades", T0 + HOUR, "ENOSPC")]
    assert flusher.pending("trades") == 5  # hour 00 is not pending any more: it can never be rewritten
    # Meanwhile new data of a later hour and of another stream land on schedule.
    later = _trades(T0 + 2 * HOUR + np.arange(3), first_id=100)
    flusher.add("trades", later)
    flusher.add("tickers", _tickers(T0 + 2 * HOUR))
    clock.now += 2.0
    assert flusher.due()
    second = flusher.flush()  # hour 01 fails again (its first retry, one interval later); the others land
    assert [f.hour_ms for f in second.failures] == [T0 + HOUR]
    assert sorted(p.relative_to(tmp_path / "landing").as_posix().split("/date=2026-11-01/")[0] + "/" + p.parent.name
                  for p in second.files) == [
        "capture_events/hour=05",  # the FLUSH_FAILED row
        "tickers/hour=02",
        "trades/hour=02",
    ]  # fmt: skip
    fault.on = False  # the disk has room again
    clock.now += 2.0
    assert not flusher.due()  # the second retry waits twice as long
    clock.now += 2.0
    third = flusher.flush()
    assert [p.parent.name for p in third.files if "/trades/" in p.as_posix()] == ["hour=01"]
    assert flusher.pending() == 0
    landed = read_landed(tmp_path, "trades")
    assert sorted(landed["trade_id"].tolist()) == sorted([*trades["trade_id"].tolist(), *later["trade_id"].tolist()])
    assert len(_failed_events(tmp_path)) == fault.injected == 2
    names = [p.name for p in (tmp_path / "landing").rglob("*.parquet")]
    assert not list((tmp_path / "landing").rglob(f"{landing.TMP_PREFIX}*"))
    assert len(names) == len(set(p.as_posix() for p in (tmp_path / "landing").rglob("*.parquet")))


def test_a_failing_file_is_retried_once_per_interval_growing_to_the_cap(tmp_path: Path, monkeypatch) -> None:
    clock = FakeClock()
    flusher = Flusher(tmp_path, "w", NAMES, flush_interval_s=2.0, clock=clock)
    fault = StorageFault(monkeypatch, "/trades/")
    flusher.add("trades", _trades(np.array([T0])))
    attempts = []
    for step in range(400):  # 100 s of a flusher loop polling every 0.25 s
        clock.now = step * 0.25
        before = fault.injected
        if flusher.due():
            flusher.flush()
        if fault.injected > before:
            attempts.append(clock.now)
    assert np.diff(attempts).tolist() == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert flusher.pending("trades") == 1


def test_once_a_failed_file_lands_every_other_back_off_shrinks_to_one_interval(tmp_path: Path, monkeypatch) -> None:
    """After a long outage the backlog lands within a round or two of the recovery, not after the 30 s cap."""
    clock = FakeClock()
    flusher = Flusher(tmp_path, "w", NAMES, flush_interval_s=2.0, clock=clock)
    fault = StorageFault(monkeypatch, "/landing/")
    flusher.add("trades", _trades(np.array([T0])))
    for step in range(200):  # 50 s of outage: the first file's back-off grows to the cap
        clock.now = step * 0.25
        if flusher.due():
            flusher.flush()
    flusher.add("tickers", _tickers(T0 + HOUR))  # a file that fails once, late in the outage (short back-off)
    flusher.flush()
    fault.on = False
    recovered_at = clock.now
    while flusher.pending() and clock.now < recovered_at + 60:
        clock.now += 0.25
        if flusher.due():
            flusher.flush()
    assert flusher.pending() == 0 and clock.now - recovered_at <= 2 * flusher.flush_interval_s


def test_a_fsync_error_after_the_rename_counts_the_file_as_landed(tmp_path: Path, monkeypatch) -> None:
    flusher = Flusher(tmp_path, "w", NAMES)
    flusher.add("trades", _trades(T0 + np.arange(4)))

    def fsync_fails(directory: Path) -> None:
        raise OSError(errno.EIO, "Input/output error", str(directory))

    monkeypatch.setattr(landing, "fsync_dir", fsync_fails)
    result = flusher.flush()
    monkeypatch.undo()
    assert result.records == {"trades": 4} and [f.error for f in result.failures] == ["EIO"]
    flusher.flush(ignore_backoff=True)
    assert len(read_landed(tmp_path, "trades")) == 4  # not landed a second time by a retry
    assert _failed_events(tmp_path)["reason"].tolist() == [b"flush:EIO:after_rename"]


def test_the_pending_buffer_reports_full_at_its_bound(tmp_path: Path) -> None:
    flusher = Flusher(tmp_path, "w", NAMES, max_pending_records=10)
    flusher.add("trades", _trades(T0 + np.arange(9)))
    assert not flusher.full
    flusher.add("trades", _trades(T0 + np.arange(9, 10)))
    assert flusher.full
    flusher.flush()
    assert not flusher.full


def test_a_spill_is_landed_by_the_next_start_exactly_once_even_if_that_start_crashes(
    tmp_path: Path, monkeypatch
) -> None:
    records = _trades(T0 + np.arange(0, 3 * HOUR, HOUR // 2))  # three hours, two rows each

    def start() -> Flusher:
        return Flusher(tmp_path, "w", NAMES, event_clock_ms=lambda: T0 + 5 * HOUR)

    stopping = start()
    fault = StorageFault(monkeypatch, "/landing/")
    stopping.add("trades", records)
    stopping.flush()
    count, path = stopping.spill()
    assert count == len(records) + 3 and path is not None and path.exists()  # and the 3 FLUSH_FAILED rows
    assert stopping.pending() == 0
    # The next start lands hours 00 and 01, then dies (a crash: nothing else happens).
    fault.match = "/hour=02/"
    crashed = start()
    assert crashed.recover_spills() == [path]
    crashed.flush()
    assert path.exists() and crashed.seq > stopping.seq
    assert len(read_landed(tmp_path, "trades")) == 4
    fault.on = False
    again = start()
    again.recover_spills()
    again.flush()
    assert not path.exists() and again.pending() == 0
    landed = read_landed(tmp_path, "trades")
    assert sorted(landed["trade_id"].tolist()) == records["trade_id"].tolist()
    events = read_landed(tmp_path, "capture_events")
    spilled = events[events["kind"] == int(schema.EventKind.SPILLED)]
    assert sorted(zip(spilled["stream"].tolist(), spilled["count"].tolist(), strict=True)) == [
        (int(schema.StreamCode.TRADES), len(records)),
        (int(schema.StreamCode.CAPTURE_EVENTS), 3),
    ]
    # The 3 failures before the spill landed with it; the crashed start's failure died with it.
    assert (events["kind"] == int(schema.EventKind.FLUSH_FAILED)).sum() == 3 == fault.injected - 1
