"""The flusher's side: drained ring records -> Arrow tables -> atomic Parquet files in the landing zone.

A `Flusher` keeps what was drained from the rings per stream, in memory, until a flush: every
`flush_interval_s` of wall time, as soon as the pending records of a stream reach into a new hour of event
time (so an hour's partition is complete promptly), and at shutdown. Each flush turns each stream's pending
records into one Arrow table and hands it to `core.landing.write_stream`, which writes one file per event
hour under a temporary name, fsyncs it, renames it into place and fsyncs the directory. The writer name is
`<node>-<rank>` and its sequence number continues after a restart (`landing.next_seq`), so names never
repeat and a crash leaves whole files or none.

No MPI here: the capture job's flusher rank drives a `Flusher`; tests and benchmarks drive it directly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundarb_dagster.core import landing, schema


@dataclass
class FlushResult:
    """What one flush wrote."""

    records: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


class Flusher:
    """Pending records per stream and the policy and mechanics of writing them to the landing zone."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        writer: str,
        names: Mapping[int, tuple[str, str]],
        *,
        flush_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.writer = writer
        self.names = dict(names)
        self.flush_interval_s = float(flush_interval_s)
        self._clock = clock
        # A crashed predecessor may have left temporaries; they never became files, so they are garbage.
        self.stale_removed = landing.remove_stale_temporaries(self.data_dir, writer)
        self.seq = landing.next_seq(self.data_dir, writer)
        self._pending: dict[str, list[np.ndarray]] = {s: [] for s in schema.STREAMS}
        self._pending_count: dict[str, int] = dict.fromkeys(schema.STREAMS, 0)
        self._pending_hour: dict[str, int | None] = dict.fromkeys(schema.STREAMS)
        self._hour_crossed = False
        self._last_flush = self._clock()
        self.flushes = 0
        self.written: dict[str, int] = dict.fromkeys(schema.STREAMS, 0)
        self.bytes_written = 0
        self.last_latency_s = 0.0

    # -- accumulating -----------------------------------------------------------------------------------
    def add(self, stream: str, records: np.ndarray) -> None:
        """Queue drained records of a stream for the next flush (the array is kept, not copied)."""
        if len(records) == 0:
            return
        if records.dtype != schema.dtype_of(stream):
            raise TypeError(f"records: dtype {records.dtype} is not stream {stream!r}'s")
        hours = records["ts_ms"] // landing.HOUR_MS
        first = self._pending_hour[stream]
        if first is None:
            self._pending_hour[stream] = first = int(hours.min())
        # Pending data reaching into a later event hour means an hour has closed: write it out promptly.
        if int(hours.max()) > first:
            self._hour_crossed = True
        self._pending[stream].append(records)
        self._pending_count[stream] += len(records)

    def pending(self, stream: str | None = None) -> int:
        if stream is not None:
            return self._pending_count[stream]
        return sum(self._pending_count.values())

    def due(self) -> bool:
        """A flush is due: the interval has passed with data pending, or an event hour has closed."""
        if not self.pending():
            return False
        return self._hour_crossed or self._clock() - self._last_flush >= self.flush_interval_s

    # -- writing ----------------------------------------------------------------------------------------
    def flush(self) -> FlushResult:
        """Write every pending record (one file per stream and event hour); returns what was written."""
        start = time.perf_counter()
        result = FlushResult()
        try:
            for stream in schema.STREAMS:
                if not self._pending_count[stream]:
                    continue
                chunks = self._pending[stream]
                records = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
                table = schema.to_arrow(stream, records, self.names, dictionary_strings=True)
                paths = landing.write_stream(self.data_dir, stream, table, self.writer, self.seq)
                # Forget records only once their files are in place: an exception above keeps them pending.
                self._pending[stream] = []
                self._pending_count[stream] = 0
                self._pending_hour[stream] = None
                result.records[stream] = len(records)
                result.files.extend(paths)
                result.bytes += sum(p.stat().st_size for p in paths)
                self.written[stream] += len(records)
        finally:
            if result.files:
                # One sequence number per flush (its files sit in distinct folders); moving on even after a
                # failure part-way keeps a retry from colliding with the files already written.
                self.seq += 1
                self.flushes += 1
            # Also after a failure: the retry waits for the next interval instead of spinning on a full disk.
            self._hour_crossed = False
            self._last_flush = self._clock()
        result.seconds = time.perf_counter() - start
        self.bytes_written += result.bytes
        if result.files:
            self.last_latency_s = result.seconds
        return result


def read_landed(data_dir: str | os.PathLike[str], stream: str) -> np.ndarray:
    """Every landed record of a stream as one array (for tests and benchmarks; the warehouse uses DuckDB)."""
    import pyarrow.parquet as pq

    root = landing.landing_root(data_dir) / stream
    parts = [schema.from_arrow(stream, pq.read_table(p)) for p in sorted(root.glob("date=*/hour=*/*.parquet"))]
    return np.concatenate(parts) if parts else schema.empty(stream)
