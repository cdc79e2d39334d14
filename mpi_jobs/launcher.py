"""Start the MPI capture job from a normal process (what `fundarb capture` calls).

Validates the config first, so a wrong value fails here with a message naming the field (exit code 2)
before any MPI process starts, and refuses a landing directory another capture job holds (naming its pid);
then runs `mpiexec -n N <python> -m mpi_jobs.capture ...`, streams the job's output, forwards SIGINT/SIGTERM
to it (hydra's mpiexec passes them on to every rank, which drain their rings and flush before exiting) and
returns the job's exit code. The job gets this process's pid (`FUNDARB_LAUNCHER_PID`) and stops by itself
when this process dies without forwarding anything (SIGKILL, an OOM kill): it never outlives its launcher.

This module must not import mpi4py: importing it initialises MPI in the calling process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

from fundarb_dagster.core import arguments
from fundarb_dagster.core.config import ConfigError, FundarbConfig, load_config

from .control import LAUNCHER_ENV
from .lock import lock_holder

EXIT_CONFIG = 2


def find_mpiexec() -> str | None:
    """`mpiexec` next to the running interpreter (the mpich wheel installs it in the venv's bin/), else PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpiexec")


def resolve_config(
    config_path: str | None,
    *,
    source: str | None = None,
    ranks: int | None = None,
    duration_s: float | None = None,
    data_dir: str | None = None,
) -> tuple[FundarbConfig, int]:
    """The validated config with the command-line overrides applied, and the rank count; raises ConfigError."""
    config = load_config(config_path)
    changes: dict[str, object] = {}
    if source is not None:
        changes["source"] = source
    if data_dir is not None:
        changes["data_dir"] = str(data_dir)
    if changes:
        config = config.with_overrides(**changes)
    n = config.capture.ranks if ranks is None else ranks
    arguments.whole(n, "ranks", minimum=2, note=" (one flusher per node and at least one watcher)")
    if duration_s is not None:
        arguments.number(duration_s, "duration", minimum=0, inclusive=False, note=" seconds")
    arguments.data_dir(config.data_dir, "data_dir")
    return config, n


def capture_command(
    mpiexec: str,
    ranks: int,
    config_path: str | None,
    *,
    source: str | None = None,
    duration_s: float | None = None,
    data_dir: str | None = None,
    hostfile: str = "",
) -> list[str]:
    """The mpiexec command line of the capture job (`-f hostfile`: its ranks over the hosts the file names)."""
    hosts = ["-f", str(hostfile)] if hostfile else []
    cmd = [mpiexec, *hosts, "-n", str(ranks), sys.executable, "-m", "mpi_jobs.capture"]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    if source is not None:
        cmd += ["--source", source]
    if duration_s is not None:
        cmd += ["--duration", repr(float(duration_s))]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return cmd


def launch_capture(
    config_path: str | None,
    *,
    source: str | None = None,
    ranks: int | None = None,
    duration_s: float | None = None,
    data_dir: str | None = None,
) -> int:
    """Run the capture job to completion (or until SIGINT/SIGTERM) and return its exit code.

    Exit code 2 and nothing started when the config or an override is wrong (the message names the field
    and the value) or when no mpiexec can be found.
    """
    try:
        config, n = resolve_config(config_path, source=source, ranks=ranks, duration_s=duration_s, data_dir=data_dir)
    except ConfigError as exc:
        print(f"fundarb capture: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    busy = lock_holder(config.data_dir)
    if busy is not None:
        print(f"fundarb capture: {busy}", file=sys.stderr)
        return EXIT_CONFIG
    mpiexec = find_mpiexec()
    if mpiexec is None:
        print(
            f"fundarb capture: no mpiexec beside {sys.executable} or on PATH (pip install mpich)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    cmd = capture_command(
        mpiexec, n, config_path, source=source, duration_s=duration_s, data_dir=data_dir,
        hostfile=config.capture.hostfile,
    )  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", LAUNCHER_ENV: str(os.getpid())}
    # The job writes its output to files that this process follows: if this process dies, the job's output
    # has somewhere to go while it stops (a pipe without a reader would kill mpiexec with SIGPIPE).
    out_path, err_path = log_paths(config.data_dir)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # A session of its own: a terminal's ^C reaches mpiexec once, through our forwarding, not twice.
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
    done = threading.Event()
    pumps = [
        threading.Thread(target=_follow, args=(out_path, sys.stdout, done), daemon=True),
        threading.Thread(target=_follow, args=(err_path, sys.stderr, done), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    previous = _forward_signals(proc)
    try:
        code = proc.wait()
    finally:
        done.set()
        _restore_signals(previous)
        for pump in pumps:
            pump.join(timeout=5)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def log_paths(data_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """`<data_dir>/.fundarb/logs/capture-<time>-<pid>.out` and `.err`: the job's output, kept."""
    folder = Path(data_dir) / ".fundarb" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"capture-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return folder / f"{stem}.out", folder / f"{stem}.err"


def _follow(path: Path, sink: IO[str], done: threading.Event) -> None:
    """Copy whole lines of a growing file to `sink` until `done` is set and the file is read to its end."""
    with open(path, "rb") as source:
        partial = b""
        while True:
            chunk = source.readline()
            if chunk:
                partial += chunk
                if partial.endswith(b"\n"):
                    sink.write(partial.decode(errors="replace"))
                    sink.flush()
                    partial = b""
                continue
            if done.is_set():  # the job has exited: what it wrote after the last read is all that is left
                rest = partial + source.read()
                if rest:
                    sink.write(rest.decode(errors="replace"))
                    sink.flush()
                return
            time.sleep(0.02)


def _forward_signals(proc: subprocess.Popen[bytes]) -> dict[int, object]:
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # signal handlers can only be installed from the main thread

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, forward)
    return previous


def _restore_signals(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
