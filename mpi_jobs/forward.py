"""Records crossing hosts: with `capture.landing: first_host`, only the first host writes the landing zone.

On every other host, local rank 0 runs the same `FlusherLoop` as a flusher (it drains its host's rings, which
stay in that host's shared memory), with a `Forwarder` in place of the `Flusher`: instead of writing Parquet it
sends each stream's drained records to the first host's flusher over MPI (the node leaders' communicator,
leader 0 = world rank 0). The first host's flusher takes them in through an `Intake` as if they came from its
own rings, so they land in the same files, crash-safely and counted the same way.

Back-pressure, never a silent drop: the landing flusher receives only while it has room for more pending
records (or is stopping); a forwarder whose messages are not received waits in its send, stops draining, and
its host's rings fill, so its watchers wait (`block`) or drop and count (`drop_newest`), as on one host.

End: a forwarder sends everything it holds, then one `done` message with its counts; the landing flusher
stops only when its own rings are closed and every forwarder said `done` (or, after a stop, the bound that
applies to a watcher that never closed its rings runs out, and the job is aborted). Messages from one
forwarder arrive in the order sent (MPI does not overtake on one communicator and tag), so `done` comes last.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fundarb_dagster.core import schema

from .flush import FlushResult

TAG = 7  # every forwarding message: ("records", stream, array) or ("done", {stream: records sent})
MESSAGE_RECORDS = 65_536  # records per message at most: bounded receive memory, sends overlap with draining
SEND_INTERVAL_S = 0.05  # a forwarder sends what it holds at least this often


class Forwarder:
    """A forwarding host's stand-in for `flush.Flusher`: the same calls, but `flush` sends over MPI."""

    def __init__(self, comm: Any, writer: str, *, max_pending_records: int, clock: Any = time.monotonic) -> None:
        self.comm = comm
        self.writer = f"{writer} (forwarding to the first host)"
        self.max_pending_records = int(max_pending_records)
        self._clock = clock
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._pending = 0
        self._last_send = clock()
        # what FlusherLoop reports about its sink
        self.seq = 0
        self.stale_removed = 0
        self.flushes = 0
        self.failures = 0
        self.bytes_written = 0
        self.last_latency_s = 0.0
        self.written: dict[str, int] = dict.fromkeys(schema.STREAMS, 0)  # forwarded

    def recover_spills(self, writer_prefix: str | None = None) -> list[Any]:
        return []  # a forwarding host keeps no landing zone, so no recovery files either

    def add(self, stream: str, records: np.ndarray) -> None:
        if len(records):
            self._chunks.setdefault(stream, []).append(records)
            self._pending += len(records)

    def pending(self, stream: str | None = None) -> int:
        if stream is None:
            return self._pending
        return sum(len(c) for c in self._chunks.get(stream, []))

    def unsaved(self) -> int:
        return self._pending

    def failing(self) -> int:
        return 0

    def due(self) -> bool:
        return self._pending > 0 and (
            self._pending >= MESSAGE_RECORDS or self._clock() - self._last_send >= SEND_INTERVAL_S
        )

    def flush(self, *, ignore_backoff: bool = False) -> FlushResult:
        """Send every stream's pending records (blocking: a landing flusher with no room holds us here)."""
        start = time.perf_counter()
        result = FlushResult()
        for stream, chunks in list(self._chunks.items()):
            records = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            for lo in range(0, len(records), MESSAGE_RECORDS):
                part = records[lo : lo + MESSAGE_RECORDS]
                self.comm.send(("records", stream, part), dest=0, tag=TAG)
                self.bytes_written += part.nbytes
                result.bytes += part.nbytes
            self.written[stream] += len(records)
            result.records[stream] = len(records)
            self._pending -= len(records)
            del self._chunks[stream]
        self._last_send = self._clock()
        if result.records:
            self.flushes += 1
            result.seconds = self.last_latency_s = time.perf_counter() - start
        return result

    def spill(self) -> tuple[int, None]:
        raise RuntimeError("a forwarder sends what it holds; it has nothing to spill")

    def finish(self) -> None:
        """After the last records: `done`, with what was sent per stream (the landing flusher checks the sum)."""
        self.comm.send(("done", {s: n for s, n in self.written.items() if n}), dest=0, tag=TAG)


class Intake:
    """The landing flusher's side: records sent by the forwarding hosts, and which of them are done."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._any_source = MPI.ANY_SOURCE
        self._status = MPI.Status()
        self.comm = comm
        self.forwarders = comm.Get_size() - 1
        self.done: dict[int, dict[str, int]] = {}
        self.received: dict[str, int] = dict.fromkeys(schema.STREAMS, 0)

    @property
    def all_done(self) -> bool:
        return len(self.done) == self.forwarders

    def receive(self, room: int | None = None) -> list[tuple[str, np.ndarray]]:
        """What has arrived, while there is `room` for more records (None: everything that has arrived)."""
        out: list[tuple[str, np.ndarray]] = []
        taken = 0
        while (room is None or taken < room) and self.comm.Iprobe(
            source=self._any_source, tag=TAG, status=self._status
        ):
            message = self.comm.recv(source=self._status.Get_source(), tag=TAG)
            if message[0] == "done":
                self.done[self._status.Get_source()] = message[1]
                continue
            _, stream, records = message
            out.append((stream, records))
            taken += len(records)
            self.received[stream] += len(records)
        return out

    def check(self) -> list[str]:
        """Streams whose records received differ from what the forwarders said they sent (empty: none lost)."""
        sent: dict[str, int] = {}
        for counts in self.done.values():
            for stream, n in counts.items():
                sent[stream] = sent.get(stream, 0) + n
        return [f"{s}: sent {sent.get(s, 0)}, received {self.received[s]}" for s in schema.STREAMS
                if sent.get(s, 0) != self.received[s]]  # fmt: skip
