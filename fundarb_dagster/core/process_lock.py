"""One process per role and folder: an advisory `flock` on a file that names its holder.

The holder keeps an exclusive `flock` on the file for its whole life and writes its pid, host and start time
into it. Another process finds the lock held and fails at once, naming that pid. The kernel drops a `flock`
when its holder dies, SIGKILL included, so a lock file left behind by a killed process is stale by
construction: the next one takes it over and says whose it was. No pid guessing, no timeouts. (On NFS, Linux
maps `flock` to POSIX byte-range locks, which the server releases when the client process dies.)

Used by the capture job (`mpi_jobs/lock.py`, one per landing directory) and the trader (one per trader name).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Describe = Callable[[dict[str, Any], Path], str]  # (holder record, lock path) -> why it is busy


class LockBusy(RuntimeError):
    """Another process holds the lock."""


def read_holder(handle: Any) -> dict[str, Any]:
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}


def started_text(holder: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))


class ProcessLock:
    """The exclusive lock at `path` (see the module docstring); `describe` says who holds it."""

    busy_error: type[LockBusy] = LockBusy

    def __init__(self, path: Path, describe: Describe) -> None:
        self.path = path
        self.describe = describe
        self._handle: Any = None

    def acquire(self, **details: Any) -> dict[str, Any]:
        """Take the lock or raise `busy_error` naming the holder; returns the stale holder taken over ({} if none)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the holder's life, closed by release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(handle)
            handle.close()
            raise self.busy_error(self.describe(holder, self.path)) from None
        stale = read_holder(handle)
        handle.seek(0)
        handle.truncate()
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), **details}
        handle.write(json.dumps(record))
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle
        return stale

    def release(self) -> None:
        if self._handle is None:
            return
        self._handle.seek(0)
        self._handle.truncate()  # a released lock names nobody
        self._handle.close()  # closing drops the flock
        self._handle = None


def holder_of(path: Path, describe: Describe) -> str | None:
    """Why the lock at `path` cannot be taken now (its holder, by pid), or None when it can."""
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe(read_holder(handle), path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
