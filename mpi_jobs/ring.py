"""A single-producer single-consumer ring of fixed-width records in MPI shared memory.

One `Ring` owns one shared segment: a 256-byte control block followed by `capacity` record slots. The
producer (a watcher rank) copies record batches in and advances `head`; the consumer (the node's flusher
rank) copies them out and advances `tail`. Both counters only grow (slot = counter % capacity), so
`head - tail` is the fill and no slot is ever ambiguous between empty and full.

Layout of the control block (int64 words, each counter on its own 64-byte line so the two sides do not
false-share a cache line):

    word 0   head       records ever written (producer writes)
    word 8   tail       records ever read (consumer writes)
    word 16  waits      times the producer found the ring full and waited (producer writes)
    word 17  drops      records discarded by the drop_newest policy (producer writes)
    word 18  closed     1 once the producer will write no more (producer writes)
    word 19  stopping   1 once the producer is handing over its last records (producer writes): the
                        consumer then takes everything, whatever bound it keeps on what it holds
    word 24  capacity, word 25 itemsize, word 26 magic (set once at creation)

Memory model: the window is created with `MPI.Win.Allocate_shared` on a `COMM_TYPE_SHARED` communicator
and every rank opens a passive-target epoch with `Lock_all(MODE_NOCHECK)` for the ring's lifetime. MPI's
unified model then allows direct load/store, with `Win.Sync()` as the memory barrier: the producer
syncs after copying records and before publishing `head`; the consumer syncs after reading `head` and
before reading the records, and again before publishing `tail` (so slots are not reused while read).

Records are copied as raw bytes (a plain memcpy per slice): a structured-dtype copy goes field by field
and is several times slower. Nothing is pickled. The copy goes through flat byte memoryviews: slice
assignment between two memoryviews costs ~0.1 us, numpy's slice-and-assign ~0.25-0.5 us, and at small
batches that per-call cost, not the bytes, is what limits throughput. Building a memoryview of a numpy array
costs more than numpy's copy (~0.45 us: numpy formats the buffer description), so each side keeps the byte
view of the last array it was given and reuses it when the same array comes back, as it does for a producer
staging into a preallocated buffer or a consumer draining into one. While cached, that array holds a buffer
export, so it cannot be resized in place (numpy refuses); everything else about it, contents included, may
change between calls.

With `comm=None` the ring runs on a plain numpy buffer (`Win.Sync` becomes a no-op) so its logic is
unit-testable in one process; pass `buffer=` to place it in memory you manage (tests, benchmarks).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HEADER_BYTES = 256
_HEAD, _TAIL, _WAITS, _DROPS, _CLOSED, _STOPPING = 0, 8, 16, 17, 18, 19
_CAPACITY, _ITEMSIZE, _MAGIC = 24, 25, 26
_MAGIC_VALUE = 0x46554E4452494E47  # "FUNDRING"


class RingTimeout(TimeoutError):
    """The consumer did not make room within the producer's timeout."""


class Backoff:
    """Spin briefly, then yield the CPU (`sched_yield`), then sleep with growing pauses up to `max_sleep_s`.

    On a machine whose cores are shared a pure spin steals the very core the other side needs (the ring's
    throughput collapses several-fold under load), so any wait longer than a few microseconds gives the
    CPU away: first by `sched_yield` (another runnable process on this core goes first), then by sleeping,
    which lets the scheduler run the other side here when it has no core of its own.
    """

    __slots__ = ("spins", "yields", "max_sleep_s", "_n")

    # The defaults: no spin, 3 yields, sleeps from 20 us capped at 0.2 ms. With a third busy process on 2 cores,
    # batch 4096, they moved the ring from ~67 to ~130 M rec/s against 200 spins + 20 yields + 1 ms
    # (bench_ring, interleaved x4, load ~6).
    def __init__(self, spins: int = 0, max_sleep_s: float = 0.0002, yields: int = 3) -> None:
        self.spins = spins
        self.yields = yields
        self.max_sleep_s = max_sleep_s
        self._n = 0

    def reset(self) -> None:
        self._n = 0

    def pause(self) -> None:
        self._n += 1
        if self._n <= self.spins:
            return
        if self._n <= self.spins + self.yields:
            os.sched_yield()  # cheap; time.sleep(0) does not give the core away
            return
        time.sleep(min(self.max_sleep_s, 1e-5 * 2 ** min(self._n - self.spins - self.yields, 10)))

    def delay_s(self) -> float:
        """The pause an async caller should `await asyncio.sleep(...)` for, advancing like `pause`."""
        self._n += 1
        if self._n <= self.spins:
            return 0.0
        return min(self.max_sleep_s, 1e-5 * 2 ** min(max(self._n - self.spins, 0), 10))


def ring_bytes(dtype: np.dtype, capacity: int) -> int:
    """Bytes one ring needs: the control block plus the record slots."""
    return HEADER_BYTES + int(capacity) * np.dtype(dtype).itemsize


class Ring:
    """An SPSC ring of `dtype` records in one shared segment (an MPI window, or a numpy buffer).

    Create it collectively with `Ring.create(...)` on every rank of a shared-memory communicator (the
    window is allocated on `owner`), or with `comm=None` in one process. Use as a context manager or call
    `free()` (collective under MPI) when done.
    """

    def __init__(
        self,
        dtype: np.dtype,
        capacity: int,
        *,
        comm: Any = None,
        owner: int = 0,
        buffer: Any = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.capacity = int(capacity)
        if self.capacity < 1:
            raise ValueError(f"capacity: {capacity!r} must be >= 1")
        self.itemsize = self.dtype.itemsize
        self.backoff = backoff or Backoff()
        self._raw_dtype = np.dtype(f"V{self.itemsize}")
        nbytes = ring_bytes(self.dtype, self.capacity)
        self._win = None
        self.comm = comm
        if comm is not None:
            from mpi4py import MPI

            size = nbytes if comm.Get_rank() == owner else 0
            self._win = MPI.Win.Allocate_shared(size, 1, comm=comm)
            mem, _ = self._win.Shared_query(owner)
            memory = np.frombuffer(mem, dtype=np.uint8, count=nbytes)
            self._win.Lock_all(MPI.MODE_NOCHECK)
            self._sync: Callable[[], None] = self._win.Sync
        else:
            memory = np.zeros(nbytes, dtype=np.uint8) if buffer is None else np.frombuffer(buffer, np.uint8, nbytes)
            self._sync = _no_sync
        self._memory = memory
        # Control words through a memoryview: an item access costs ~35 ns against ~150 ns for numpy scalars.
        self._ctl = memoryview(memory[:HEADER_BYTES]).cast("q")
        self._slots = memory[HEADER_BYTES:nbytes].view(self._raw_dtype)
        self._slot_bytes = memoryview(memory[HEADER_BYTES:nbytes])
        self._ring_bytes = self.capacity * self.itemsize
        # The last array each side was given and its flat byte view (see the module docstring).
        self._in_array: np.ndarray | None = None
        self._in_bytes: memoryview | None = None
        self._in_count = self._in_nbytes = 0
        self._out_array: np.ndarray | None = None
        self._out_bytes: memoryview | None = None
        is_owner = comm is None or comm.Get_rank() == owner
        if is_owner and (buffer is None or int(self._ctl[_MAGIC]) != _MAGIC_VALUE):
            memory[:HEADER_BYTES] = 0
            self._ctl[_CAPACITY] = self.capacity
            self._ctl[_ITEMSIZE] = self.itemsize
            self._ctl[_MAGIC] = _MAGIC_VALUE
        if comm is not None:
            self._sync()
            comm.Barrier()  # the owner's initialised control block is visible before anyone uses it
            self._sync()
        if int(self._ctl[_MAGIC]) != _MAGIC_VALUE or int(self._ctl[_ITEMSIZE]) != self.itemsize:
            raise ValueError("ring: shared segment does not hold a ring of this dtype")
        # Each side caches the other side's counter and re-reads it only when the cached value says stop.
        self._head = int(self._ctl[_HEAD])
        self._tail = int(self._ctl[_TAIL])
        self._seen_tail = self._tail
        self._seen_head = self._head
        # Producer fast-path state, derived from the counters above: the head may grow up to `_head_limit`
        # without reading the consumer's tail, and `_wpos` is the byte offset of slot `head % capacity`.
        self._head_limit = self._seen_tail + self.capacity
        self._wpos = (self._head % self.capacity) * self.itemsize

    @classmethod
    def create(cls, comm: Any, dtype: np.dtype, capacity: int, owner: int = 0, **kwargs: Any) -> Ring:
        """Collective: every rank of the shared-memory `comm` calls it with the same arguments."""
        return cls(dtype, capacity, comm=comm, owner=owner, **kwargs)

    # -- lifetime ---------------------------------------------------------------------------------------
    def free(self) -> None:
        """Release the window (collective under MPI); the ring is unusable afterwards. Idempotent."""
        self._in_array = self._in_bytes = self._out_array = self._out_bytes = None
        if self._ctl is not None:
            self._ctl.release()
            self._slot_bytes.release()
        if self._win is not None:
            self._win.Unlock_all()
            self._win.Free()
            self._win = None
        self._ctl = self._slots = self._slot_bytes = self._memory = None  # type: ignore[assignment]

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    # -- shared counters --------------------------------------------------------------------------------
    @property
    def waits(self) -> int:
        return int(self._ctl[_WAITS])

    @property
    def drops(self) -> int:
        return int(self._ctl[_DROPS])

    @property
    def written(self) -> int:
        """Records ever pushed (read from shared memory: valid on either side)."""
        self._sync()
        return int(self._ctl[_HEAD])

    @property
    def read(self) -> int:
        self._sync()
        return int(self._ctl[_TAIL])

    @property
    def closed(self) -> bool:
        self._sync()
        return bool(self._ctl[_CLOSED])

    def __len__(self) -> int:
        """Records waiting to be read."""
        self._sync()
        return int(self._ctl[_HEAD]) - int(self._ctl[_TAIL])

    def fill(self) -> float:
        """Fraction of the slots in use, 0..1."""
        return len(self) / self.capacity

    def close(self) -> None:
        """Producer: no more records will come. The consumer drains what is left and sees `closed`."""
        self._sync()
        self._ctl[_CLOSED] = 1
        self._sync()

    @property
    def stopping(self) -> bool:
        self._sync()
        return bool(self._ctl[_STOPPING])

    def mark_stopping(self) -> None:
        """Producer: the last records are coming (then `close`); the consumer should take them all."""
        self._ctl[_STOPPING] = 1
        self._sync()

    # -- producer ---------------------------------------------------------------------------------------
    def try_push(self, records: np.ndarray) -> int:
        """Copy as many of `records` as fit without waiting; returns how many were written.

        `records` are of the ring's dtype, or a raw `V{itemsize}` view of them. Passing the same array again
        (a staging buffer refilled in place) skips building its byte view: the fast path for small batches.
        """
        n = whole = len(records)
        head = self._head
        capacity = self.capacity
        if capacity - (head - self._seen_tail) < n:
            # Only now is the consumer's counter worth a shared-memory read (and its two barriers).
            self._sync()
            self._seen_tail = self._ctl[_TAIL]
            self._sync()  # the consumer's reads of those slots are complete before we overwrite them
            self._head_limit = self._seen_tail + capacity
            n = min(n, capacity - (head - self._seen_tail))
            if n <= 0:
                return 0
        if n == 0:
            return 0
        src = self._in_bytes if records is self._in_array else self._bytes_in(records)
        itemsize = self.itemsize
        start = (head % capacity) * itemsize
        nbytes = n * itemsize
        end = start + nbytes
        if end <= self._ring_bytes:
            # Slicing costs more than the copy at small batches: skip it when the whole array goes in.
            self._slot_bytes[start:end] = src if n == whole else src[:nbytes]
        else:
            first = self._ring_bytes - start
            self._slot_bytes[start:] = src[:first]
            self._slot_bytes[: nbytes - first] = src[first:nbytes]
        self._head = head = head + n
        self._wpos = (head % capacity) * itemsize
        self._sync()  # records visible before the head that publishes them
        self._ctl[_HEAD] = head
        return n

    def _bytes_in(self, records: np.ndarray) -> memoryview:
        """A flat byte view of `records`, remembered for the next call if it is the same array."""
        raw = self._raw(records)
        if not raw.flags.c_contiguous:
            return memoryview(np.ascontiguousarray(raw)).cast("B")  # a strided slice: copy, not worth caching
        self._in_bytes = view = memoryview(raw).cast("B")
        self._in_array = records
        self._in_count = len(records)
        self._in_nbytes = view.nbytes
        return view

    def _raw(self, records: np.ndarray) -> np.ndarray:
        dtype = records.dtype
        if dtype == self._raw_dtype:
            return records
        if dtype == self.dtype:
            return records.view(self._raw_dtype)
        raise TypeError(f"records: dtype {dtype} is not this ring's {self.dtype}")

    def push(self, records: np.ndarray, *, drop: bool = False, timeout_s: float | None = None) -> int:
        """Write all `records`, waiting (with back-off) while the ring is full; returns records written.

        `drop=True` is the `drop_newest` policy: what does not fit now is discarded and counted in `drops`
        instead of waiting. Each time the producer has to wait counts once in `waits`.
        """
        # try_push's common case inlined, on precomputed state (the array seen last time, room by the cached
        # tail, no wraparound): at batch 1 a push is Python overhead, and the extra method call alone was ~20 %.
        if records is self._in_array:
            n = self._in_count
            head = self._head + n
            start = self._wpos
            end = start + self._in_nbytes
            if head <= self._head_limit and end < self._ring_bytes:
                self._slot_bytes[start:end] = self._in_bytes  # type: ignore[index]
                self._head = head
                self._wpos = end
                self._sync()  # records visible before the head that publishes them
                self._ctl[_HEAD] = head
                return n
        n = len(records)
        done = self.try_push(records)
        if done == n:
            return done
        if drop:
            self._count(_DROPS, len(records) - done)
            return done
        self._count(_WAITS, 1)
        backoff = self.backoff
        backoff.reset()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while done < len(records):
            backoff.pause()
            wrote = self.try_push(records[done:])
            if wrote:
                done += wrote
                backoff.reset()
            elif deadline is not None and time.monotonic() > deadline:
                raise RingTimeout(f"ring: full for {timeout_s} s with {len(records) - done} records left")
        return done

    def count_wait(self) -> None:
        """Record one producer wait (for callers that wait themselves, e.g. with asyncio.sleep)."""
        self._count(_WAITS, 1)

    def count_drops(self, n: int) -> None:
        self._count(_DROPS, n)

    def _count(self, word: int, n: int) -> None:
        # Only the producer writes these words, so a read-modify-write is race-free.
        self._ctl[word] = self._ctl[word] + n
        self._sync()

    # -- consumer ---------------------------------------------------------------------------------------
    def available(self) -> int:
        """Records the consumer can read now."""
        self._sync()
        self._seen_head = int(self._ctl[_HEAD])
        self._sync()
        return self._seen_head - self._tail

    def pop_into(self, out: np.ndarray) -> int:
        """Copy up to `len(out)` waiting records into `out` (ring dtype or its raw view); returns how many.

        Draining into the same preallocated `out` each time is the fast path (its byte view is kept).
        """
        want = len(out)
        tail = self._tail
        n = self._seen_head - tail
        if n < want:
            self._sync()
            self._seen_head = self._ctl[_HEAD]
            self._sync()  # the records behind that head are visible after this barrier
            n = self._seen_head - tail
            if n <= 0:
                return 0
            if n > want:
                n = want
        else:
            n = want
        dst = self._out_bytes if out is self._out_array else self._bytes_out(out)
        if dst is None:  # a strided `out`: go through a contiguous temporary
            tmp = np.empty(n, self.dtype)
            self._copy_out(memoryview(tmp.view(self._raw_dtype)).cast("B"), tail, n)
            out[:n] = tmp
        else:
            start = (tail % self.capacity) * self.itemsize
            end = start + n * self.itemsize
            if end <= self._ring_bytes:  # no wraparound: one copy, inline (a method call is ~0.1 us)
                dst[: end - start] = self._slot_bytes[start:end]
            else:
                self._copy_out(dst, tail, n)
        self._tail = tail = tail + n
        self._sync()  # finished reading the slots before handing them back
        self._ctl[_TAIL] = tail
        return n

    def _copy_out(self, dst: memoryview, tail: int, n: int) -> None:
        itemsize = self.itemsize
        start = (tail % self.capacity) * itemsize
        nbytes = n * itemsize
        end = start + nbytes
        if end <= self._ring_bytes:
            if nbytes == len(dst):
                dst[:] = self._slot_bytes[start:end]
            else:
                dst[:nbytes] = self._slot_bytes[start:end]
        else:
            first = self._ring_bytes - start
            dst[:first] = self._slot_bytes[start:]
            dst[first:nbytes] = self._slot_bytes[: nbytes - first]

    def _bytes_out(self, out: np.ndarray) -> memoryview | None:
        raw = self._raw(out)
        if not raw.flags.c_contiguous:
            return None
        self._out_bytes = view = memoryview(raw).cast("B")
        self._out_array = out
        return view

    def pop(self, max_records: int | None = None) -> np.ndarray:
        """A copy of up to `max_records` (default: all) waiting records, oldest first."""
        want = self.available() if max_records is None else min(max_records, self.available())
        # A fresh array each call: copy through numpy rather than build (and cache) a byte view of it.
        out = np.empty(max(want, 0), dtype=self._raw_dtype)
        if want > 0:
            tail = self._tail
            start = tail % self.capacity
            end = start + want
            if end <= self.capacity:
                out[...] = self._slots[start:end]
            else:
                first = self.capacity - start
                out[:first] = self._slots[start:]
                out[first:] = self._slots[: want - first]
            self._tail = tail = tail + want
            self._sync()  # finished reading the slots before handing them back
            self._ctl[_TAIL] = tail
        return out.view(self.dtype)


def _no_sync() -> None:
    return None
