"""A fault-injecting storage seam for the capture job's tests and benchmarks (never on a real deployment).

Put this folder on PYTHONPATH and name a JSON plan in FUNDARB_TEST_STORAGE_FAULTS: every Python process of
the job (each MPI rank) then wraps `landing.write_atomic`, the one function through which landing files and
recovery files reach the disk, and fails the writes the plan matches, the way a misbehaving disk does:

    {"rules": [{"match": "/trades/.*/hour=0[13579]/",   # regex on the target path
                "errno": "ENOSPC",                      # ENOSPC, EACCES, EIO...
                "stage": "write",                       # write: part of the file is written, then the error;
                                                        # fsync_dir: the file is renamed into place, then EIO
                "flag": "/tmp/x/failing"}],             # only while this file exists (default: always)
     "log": "/tmp/x/injected.log"}                      # one line per failure injected: the exact count

Nothing else changes: the real flusher, the real temporaries and renames, the real recovery path.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path


def _install(plan_path: str) -> None:
    from fundarb_dagster.core import landing

    plan = json.loads(Path(plan_path).read_text())
    rules = [{**rule, "regex": re.compile(rule["match"])} for rule in plan["rules"]]
    log = plan.get("log")
    real = landing.write_atomic

    def matching(path: Path) -> dict | None:
        for rule in rules:
            flag = rule.get("flag")
            if (flag is None or os.path.exists(flag)) and rule["regex"].search(path.as_posix()):
                return rule
        return None

    def record(code: int, path: Path) -> None:
        if log:
            with open(log, "a") as handle:  # O_APPEND: whole lines from every process
                handle.write(f"{os.getpid()} {errno.errorcode[code]} {path}\n")

    def write_atomic(path: Path, write):  # noqa: ANN001, ANN202 - the signature of landing.write_atomic
        rule = matching(path)
        if rule is None:
            return real(path, write)
        code = getattr(errno, rule.get("errno", "ENOSPC"))
        if rule.get("stage", "write") == "fsync_dir":
            done = real(path, write)
            record(code, path)
            raise OSError(code, os.strerror(code), str(done.parent))

        def fail_part_way(handle) -> None:  # noqa: ANN001
            handle.write(b"PAR1" + bytes(4096))  # part of the file reached the disk before the error
            record(code, path)
            raise OSError(code, os.strerror(code), str(path))

        return real(path, fail_part_way)

    landing.write_atomic = write_atomic


if os.environ.get("FUNDARB_TEST_STORAGE_FAULTS"):
    _install(os.environ["FUNDARB_TEST_STORAGE_FAULTS"])
