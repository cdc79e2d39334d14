"""What every rank of the capture job shares: exit codes, the stop flag, the launcher watch, one-line output.

A rank stops on SIGTERM/SIGINT (hydra's mpiexec forwards both to every rank) and also when the process that
launched the job has gone (`fundarb capture` killed by SIGKILL, an OOM kill, a closed terminal): the
launcher passes its pid in `FUNDARB_LAUNCHER_PID`, and the stop flag checks it about once a second, so the
job never outlives its launcher by more than that plus its bounded shutdown.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from fundarb_dagster.core import schema

EXIT_OK = 0  # everything captured landed
EXIT_ERROR = 1  # a failure, or records lost (the last line says exactly how many)
EXIT_CONFIG = 2  # refused before any work: bad config or arguments, or the landing directory is in use
EXIT_UNUSED = 3  # a wire replay used less of its recording's frames than replay.min_use_ratio (what it used landed)
EXIT_SPILLED = 75  # EX_TEMPFAIL: storage failed at shutdown; a recovery file holds the rest, the next start lands it
RING_STREAMS: tuple[str, ...] = (*schema.MARKET_STREAMS, "capture_events")
EVENT_RING_RECORDS = 8192
# A market stream's ring holds `ring_records` records of up to this many bytes; a wider record (the order book's
# top levels, 672 bytes) gets proportionally fewer slots, so an unused book ring costs what a tickers ring does.
RING_RECORD_BYTES = 128


def ring_capacity(stream: str, capture: Any) -> int:
    """Slots of a watcher's ring for a market stream: `capture.ring_records`, fewer for wide records (never
    below `capture.batch_records`, one hand-over)."""
    itemsize = schema.dtype_of(stream).itemsize
    if itemsize <= RING_RECORD_BYTES:
        return int(capture.ring_records)
    return max(int(capture.batch_records), int(capture.ring_records) * RING_RECORD_BYTES // itemsize)


LAUNCHER_ENV = "FUNDARB_LAUNCHER_PID"
LAUNCHER_CHECK_S = 1.0


def process_start_time(pid: int) -> str | None:
    """An identity for a live process (its start time in clock ticks on Linux), None when it does not exist.

    A pid alone can be reused by a new process after the old one died; pid plus start time cannot.
    """
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # Field 22 (starttime); the command name (field 2) may hold spaces, so count from its ')'.
            return handle.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)  # no /proc (macOS): existence is all we can tell
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


class StopFlag:
    """Set by SIGTERM/SIGINT, or when the launcher has gone; every loop polls it. The handler only sets a flag."""

    def __init__(self, launcher_pid: int | None = None) -> None:
        self.signal: int | None = None
        self.reason = ""
        self._launcher_pid = launcher_pid
        self._launcher_id = process_start_time(launcher_pid) if launcher_pid else None
        self._next_check = 0.0

    @classmethod
    def from_environment(cls) -> StopFlag:
        raw = os.environ.get(LAUNCHER_ENV, "")
        return cls(int(raw) if raw.isdigit() else None)

    def __bool__(self) -> bool:
        return self.poll()

    def poll(self, force: bool = False) -> bool:
        """Whether to stop; checks the launcher at most once per `LAUNCHER_CHECK_S` unless `force`."""
        if self.signal is None and self._launcher_pid is not None:
            now = time.monotonic()
            if force or now >= self._next_check:
                self._next_check = now + LAUNCHER_CHECK_S
                if process_start_time(self._launcher_pid) != self._launcher_id:
                    self.signal = signal.SIGHUP
                    self.reason = f"launcher pid {self._launcher_pid} has gone"
        return self.signal is not None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum

    def describe(self) -> str:
        if self.reason:
            return self.reason
        return signal.Signals(self.signal).name if self.signal is not None else "the end of the run"


def say(*parts: object, file: Any = None, flush: bool = True) -> None:
    """Print one line with a single write: `print` writes the text and the newline separately, and lines of
    ranks sharing mpiexec's output could interleave between the two."""
    stream = sys.stdout if file is None else file
    stream.write(" ".join(str(p) for p in parts) + "\n")
    if flush:
        stream.flush()
