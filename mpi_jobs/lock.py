"""One capture job per landing directory: an advisory lock at `<data_dir>/.fundarb/capture.lock`.

World rank 0 of the job holds it (`core/process_lock.py`: an exclusive `flock` naming its pid, host and start
time) for the job's whole life. A second job (or `fundarb capture`, before it starts mpiexec) finds the lock
held and fails at once, naming that pid; the lock of a killed job is stale by construction and the next job
takes it over, saying whose it was.

Imports no mpi4py: the launcher uses it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fundarb_dagster.core.process_lock import LockBusy, ProcessLock, holder_of, started_text


class CaptureBusy(LockBusy):
    """Another capture job holds the landing directory."""


def lock_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / ".fundarb" / "capture.lock"


def _describe(holder: dict[str, Any], path: Path) -> str:
    if not holder:
        return f"data_dir: {str(path.parent.parent)!r} is in use by another capture job (lock {path})"
    return (
        f"data_dir: {str(path.parent.parent)!r} is in use by the capture job with pid {holder.get('pid')} "
        f"on {holder.get('host')} (started {started_text(holder)}); stop it first, or capture into another data_dir"
    )


class CaptureLock(ProcessLock):
    """The exclusive lock of one landing directory (see the module docstring)."""

    busy_error = CaptureBusy

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        super().__init__(lock_path(data_dir), _describe)


def lock_holder(data_dir: str | os.PathLike[str]) -> str | None:
    """Why a capture cannot start on `data_dir` now (the running job, by pid), or None when it can."""
    return holder_of(lock_path(data_dir), _describe)
