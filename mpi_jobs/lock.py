"""One capture job per landing directory: an advisory lock at `<data_dir>/.fundarb/capture.lock`.

World rank 0 of the job holds an exclusive `flock` on the file for the job's whole life and writes its pid,
host and start time into it. A second job (or `fundarb capture`, before it starts mpiexec) finds the lock
held and fails at once, naming that pid. The kernel drops a `flock` when its holder dies, SIGKILL included,
so a lock file left behind by a killed job is stale by construction: the next job takes it over and says
whose it was. No pid guessing, no timeouts. (On NFS, Linux maps `flock` to POSIX byte-range locks, which the
server releases when the client process dies.)

Imports no mpi4py: the launcher uses it too.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any


class CaptureBusy(RuntimeError):
    """Another capture job holds the landing directory."""


def lock_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / ".fundarb" / "capture.lock"


def _describe(holder: dict[str, Any], path: Path) -> str:
    if not holder:
        return f"data_dir: {str(path.parent.parent)!r} is in use by another capture job (lock {path})"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (
        f"data_dir: {str(path.parent.parent)!r} is in use by the capture job with pid {holder.get('pid')} "
        f"on {holder.get('host')} (started {started}); stop it first, or capture into another data_dir"
    )


def _read(handle: Any) -> dict[str, Any]:
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}


class CaptureLock:
    """The exclusive lock of one landing directory (see the module docstring)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = lock_path(data_dir)
        self._handle: Any = None

    def acquire(self, **details: Any) -> dict[str, Any]:
        """Take the lock or raise CaptureBusy naming the holder; returns the stale holder taken over ({} if none)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the job's life, closed by release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(handle)
            handle.close()
            raise CaptureBusy(_describe(holder, self.path)) from None
        stale = _read(handle)
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


def lock_holder(data_dir: str | os.PathLike[str]) -> str | None:
    """Why a capture cannot start on `data_dir` now (the running job, by pid), or None when it can."""
    path = lock_path(data_dir)
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read(handle), path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
