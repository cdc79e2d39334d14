"""The flusher's side: drained ring records -> Arrow tables -> atomic Parquet files in the landing zone.

A `Flusher` keeps what was drained from the rings in memory, in one bucket per (stream, event hour): each
bucket becomes one file, `landing/<stream>/date=.../hour=HH/<writer>-<seq>.parquet`. A flush round writes
every bucket that is ready, each on its own: a bucket whose file landed is forgotten at once (its rows can
never be written again), a bucket whose write failed (a full disk, a permission or I/O error) stays pending
and is retried after a back-off that starts at `flush_interval_s` and doubles up to `MAX_BACKOFF_S`, while
every other stream and hour keeps landing. When a file that had failed lands, storage is back: every other
back-off shrinks to one interval, so an outage's backlog lands without waiting out the cap. Rounds run every
`flush_interval_s`, as soon as an hour of a stream closes (a later hour appears), and at shutdown.

Names never repeat: every round that attempted a write moves the sequence number on, a name found on disk
is skipped, and the sequence continues after a restart (`landing.next_seq`, and the recovery files'
reserved numbers). A failed write leaves no temporary (`landing.write_atomic`); when only the folder's
fsync failed, the renamed file is whole and is counted as landed, so a retry cannot land its rows twice.

Every failed file write adds one FLUSH_FAILED row (`reason` `flush:<errno>`, `stream` and `start_ms`/
`end_ms` of the hour) to the flusher's own `capture_events`, which land like any other records.

Memory is bounded by the caller: `full` says the pending records reached `max_pending_records`, and the
capture job then stops draining its rings, so watchers wait (block policy) or drop and count (drop_newest).
At shutdown, `spill` writes what is still pending to a recovery file (`spill.py`); a `Flusher` started on
the same landing zone lands those files first (`recover_spills`), exactly once.

No MPI here: the capture job's flusher rank drives a `Flusher`; tests and benchmarks drive it directly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.sources.validation import event_rows

from . import spill

MAX_BACKOFF_S = 30.0  # a failing file is retried at least this often (or every flush interval, if longer)
DEFAULT_MAX_PENDING_RECORDS = 4_000_000  # ~190 MB of trades records


@dataclass
class FlushFailure:
    """One file write that failed."""

    stream: str
    hour_ms: int
    records: int
    error: str  # errno name (ENOSPC, EACCES, EIO...) or the exception type
    message: str


@dataclass
class FlushResult:
    """What one flush round wrote, and what it failed to write."""

    records: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    failures: list[FlushFailure] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


@dataclass
class _Bucket:
    """The pending records of one stream and event hour: one landing file once written."""

    stream: str
    hour_ms: int
    chunks: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    failures: int = 0
    retry_at: float = 0.0
    # Recovered from a spill: lands under exactly this file name (or is already there), never merged.
    name: str | None = None
    origin: Path | None = None

    def records(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]  # a retry does not concatenate the same rows again
        return self.chunks[0]


class Flusher:
    """Pending records per stream and hour, and the policy and mechanics of writing them to the landing zone."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        writer: str,
        names: Mapping[int, tuple[str, str]],
        *,
        flush_interval_s: float = 2.0,
        max_pending_records: int = DEFAULT_MAX_PENDING_RECORDS,
        clock: Callable[[], float] = time.monotonic,
        event_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.writer = writer
        self.names = dict(names)
        self.flush_interval_s = float(flush_interval_s)
        self.max_pending_records = int(max_pending_records)
        self._clock = clock
        self._event_clock_ms = event_clock_ms or (lambda: int(time.time() * 1000))
        # A crashed predecessor may have left temporaries; they never became files, so they are garbage.
        self.stale_removed = landing.remove_stale_temporaries(self.data_dir, writer)
        self.seq = max(landing.next_seq(self.data_dir, writer), spill.next_spill_seq(self.data_dir, writer))
        self._buckets: dict[tuple[str, int, str | None], _Bucket] = {}
        self._pending = 0
        self._newest_hour: dict[str, int] = {}
        self._last_round = self._clock()
        self._spills: dict[Path, int] = {}  # recovery file -> its buckets not landed yet
        self.flushes = 0
        self.failures = 0
        self.written: dict[str, int] = dict.fromkeys(schema.STREAMS, 0)
        self.recovered = 0
        self.bytes_written = 0
        self.last_latency_s = 0.0

    # -- accumulating -----------------------------------------------------------------------------------
    def add(self, stream: str, records: np.ndarray) -> None:
        """Queue drained records of a stream for the next flush (the array is kept, not copied)."""
        if len(records) == 0:
            return
        if records.dtype != schema.dtype_of(stream):
            raise TypeError(f"records: dtype {records.dtype} is not stream {stream!r}'s")
        for hour_ms, rows in landing.split_by_hour(records["ts_ms"]):
            part = records if len(rows) == len(records) else records[rows]
            bucket = self._bucket(stream, hour_ms)
            bucket.chunks.append(part)
            bucket.count += len(part)
            self._pending += len(part)
            if hour_ms > self._newest_hour.get(stream, hour_ms - 1):
                self._newest_hour[stream] = hour_ms

    def _bucket(self, stream: str, hour_ms: int, name: str | None = None) -> _Bucket:
        key = (stream, hour_ms, name)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(stream, hour_ms, name=name)
        return bucket

    def pending(self, stream: str | None = None) -> int:
        if stream is None:
            return self._pending
        return sum(b.count for b in self._buckets.values() if b.stream == stream)

    def unsaved(self) -> int:
        """Pending records that are in no recovery file (what a stop would lose without a spill)."""
        return sum(b.count for b in self._buckets.values() if b.origin is None)

    @property
    def full(self) -> bool:
        """The pending records reached the bound: the caller should stop taking more."""
        return self._pending >= self.max_pending_records

    def failing(self) -> int:
        """Buckets whose last write failed (waiting for their retry)."""
        return sum(1 for b in self._buckets.values() if b.failures)

    def due(self) -> bool:
        """A round is due: a bucket is ready and the interval has passed, or a ready bucket's hour has closed."""
        now = self._clock()
        interval_over = now - self._last_round >= self.flush_interval_s
        for bucket in self._buckets.values():
            if bucket.retry_at > now:
                continue
            if interval_over or bucket.hour_ms < self._newest_hour.get(bucket.stream, bucket.hour_ms):
                return True
        return False

    # -- writing ----------------------------------------------------------------------------------------
    def flush(self, *, ignore_backoff: bool = False) -> FlushResult:
        """Write every ready bucket (all pending ones with `ignore_backoff`), each to its own file."""
        start = time.perf_counter()
        now = self._clock()
        result = FlushResult()
        ready = [b for b in self._buckets.values() if ignore_backoff or b.retry_at <= now]
        recovered = False
        for bucket in sorted(ready, key=lambda b: (b.hour_ms, b.stream)):
            recovered |= self._write(bucket, result, now) and bucket.failures > 0
        if recovered:
            # A file that had failed has landed: storage is back, so the others' back-off (grown while everything
            # failed) shrinks to one interval, and an outage's backlog lands within a round or two, not up to
            # MAX_BACKOFF_S later. (A file that keeps failing while others land keeps its own growing back-off.)
            soon = now + self.flush_interval_s
            for other in self._buckets.values():
                other.retry_at = min(other.retry_at, soon)
        if ready:
            self.seq += 1  # the next round never reuses a name this one may have tried
            self.flushes += 1
        self._last_round = now
        result.seconds = time.perf_counter() - start
        self.bytes_written += result.bytes
        if result.files:
            self.last_latency_s = result.seconds
        return result

    def _write(self, bucket: _Bucket, result: FlushResult, now: float) -> bool:
        """Write one bucket's file; True when it landed."""
        folder = landing.partition_dir(self.data_dir, bucket.stream, bucket.hour_ms)
        if bucket.name is not None:
            path = folder / bucket.name
        else:
            while (folder / landing.file_name(self.writer, self.seq)).exists():
                self.seq += 1  # never a name already on disk
            path = folder / landing.file_name(self.writer, self.seq)
        try:
            if not path.exists():  # a recovered bucket whose file an interrupted recovery already landed
                records = bucket.records()
                table = schema.to_arrow(bucket.stream, records, self.names, dictionary_strings=True)
                landing.write_parquet_atomic(table, path)
        except OSError as exc:
            # When only the folder's fsync failed, the file is whole and visible: it counts as landed.
            landed = path.exists()
            if landed:
                self._landed(bucket, path, result)
            self._failed(bucket, exc, result, now, landed=landed)
            return landed
        self._landed(bucket, path, result)
        return True

    def _landed(self, bucket: _Bucket, path: Path, result: FlushResult) -> None:
        del self._buckets[(bucket.stream, bucket.hour_ms, bucket.name)]
        self._pending -= bucket.count
        result.records[bucket.stream] = result.records.get(bucket.stream, 0) + bucket.count
        result.files.append(path)
        with contextlib.suppress(OSError):  # only a figure for the progress line
            result.bytes += path.stat().st_size
        self.written[bucket.stream] += bucket.count
        if bucket.origin is not None:
            self.recovered += bucket.count
            self._spills[bucket.origin] -= 1
            if not self._spills[bucket.origin]:
                del self._spills[bucket.origin]
                spill.remove_spill(bucket.origin)

    def _failed(self, bucket: _Bucket, exc: OSError, result: FlushResult, now: float, landed: bool = False) -> None:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        result.failures.append(FlushFailure(bucket.stream, bucket.hour_ms, bucket.count, name, str(exc)))
        self.failures += 1
        if not landed:
            bucket.failures += 1
            backoff = self.flush_interval_s * 2 ** min(bucket.failures - 1, 16)
            bucket.retry_at = now + min(backoff, max(self.flush_interval_s, MAX_BACKOFF_S))
        when = self._event_clock_ms()
        self.add(
            "capture_events",
            event_rows(
                schema.EventKind.FLUSH_FAILED,
                bucket.stream,
                -1,
                when,
                when,
                start_ms=bucket.hour_ms,
                end_ms=bucket.hour_ms + landing.HOUR_MS - 1,
                reason=f"flush:{name}" + (":after_rename" if landed else ""),
            ),
        )

    # -- recovery files ---------------------------------------------------------------------------------
    def spill(self) -> tuple[int, Path | None]:
        """Write every pending record not already in a recovery file to a new one; returns (records, path).

        The file's sequence number is reserved here, so the next start lands it under names no file has.
        Buckets recovered from an earlier spill stay in their own file, which is kept until they land.
        """
        live = [b for b in self._buckets.values() if b.origin is None]
        count = self.unsaved()
        if not count:
            return 0, None
        per_stream: dict[str, list[np.ndarray]] = {}
        for bucket in live:
            per_stream.setdefault(bucket.stream, []).append(bucket.records())
        when = self._event_clock_ms()
        counts = {stream: sum(len(p) for p in parts) for stream, parts in per_stream.items()}
        for stream, n in counts.items():
            event = event_rows(schema.EventKind.SPILLED, stream, -1, when, when, count=n, reason="spill:shutdown")
            per_stream.setdefault("capture_events", []).append(event)
        path = spill.spill_path(self.data_dir, self.writer, self.seq)
        spill.write_spill(path, {s: np.concatenate(parts) for s, parts in per_stream.items()})
        self.seq += 1
        for bucket in live:
            del self._buckets[(bucket.stream, bucket.hour_ms, bucket.name)]
            self._pending -= bucket.count
        return count, path

    def recover_spills(self, writer_prefix: str | None = None) -> list[Path]:
        """Queue the records of every recovery file of writers starting with `writer_prefix` (default: this
        writer) under their reserved names; each file is deleted once all its hours have landed."""
        found = []
        for path, writer, seq in spill.list_spills(self.data_dir, writer_prefix or self.writer):
            if path in self._spills:
                continue
            name = landing.file_name(writer, seq)
            buckets = set()
            for stream, records in spill.read_spill(path).items():
                for hour_ms, rows in landing.split_by_hour(records["ts_ms"]):
                    bucket = self._bucket(stream, hour_ms, name)
                    bucket.chunks.append(records[rows])
                    bucket.count += len(rows)
                    bucket.origin = path
                    self._pending += len(rows)
                    buckets.add((stream, hour_ms))
            self._spills[path] = len(buckets)
            found.append(path)
        return found


def read_landed(data_dir: str | os.PathLike[str], stream: str) -> np.ndarray:
    """Every landed record of a stream as one array (for tests and benchmarks; the warehouse uses DuckDB)."""
    import pyarrow.parquet as pq

    parts = [schema.from_arrow(stream, pq.read_table(p)) for p in landing.stream_files(data_dir, stream)]
    return np.concatenate(parts) if parts else schema.empty(stream)
