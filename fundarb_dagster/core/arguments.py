"""Checks of command-line arguments, run before any work: each failure is a `ConfigError` whose one line
names the argument and the value (the CLI prints it and exits 2)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .config import ConfigError


def number(value: float, name: str, *, minimum: float, inclusive: bool = True, note: str = "") -> float:
    """A finite number >= `minimum` (> it when not `inclusive`)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= minimum if inclusive else value > minimum
    if not ok:
        bound = f"{'>=' if inclusive else '>'} {minimum:g}"
        raise ConfigError(f"{name}: {value!r} must be a finite number {bound}{note}")
    return float(value)


def whole(value: int, name: str, *, minimum: int, note: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: {value!r} must be a whole number >= {minimum}{note}")
    return value


def data_dir(path: str | os.PathLike[str], name: str = "--data-dir") -> Path:
    """A folder that exists or can be created: not a file, nor under one."""
    folder = Path(path)
    for candidate in (folder, *folder.absolute().parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == folder else f"is under {str(candidate)!r}, which is a file"
                raise ConfigError(f"{name}: {str(path)!r} {where}, not a folder")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise ConfigError(f"{name}: {str(path)!r} cannot be written ({str(candidate)!r} is read-only)")
            break
    return folder


def existing_paths(paths: list[Path], name: str = "paths") -> list[Path]:
    """Every path exists (a file or a folder)."""
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{name}: {str(path)!r} does not exist")
    return paths


def demo(
    data_dir_: str | os.PathLike[str], history_days: float, capture_seconds: float, speed: float, ranks: int
) -> None:
    """`fundarb demo`'s arguments (each would otherwise fail only after the history pull, or not at all)."""
    data_dir(data_dir_)
    number(history_days, "--history-days", minimum=0)
    number(capture_seconds, "--capture-seconds", minimum=0, note=" (0 skips the capture)")
    number(speed, "--speed", minimum=0, inclusive=False, note=" (sim market seconds per wall second)")
    whole(ranks, "--ranks", minimum=2, note=" (one flusher and at least one watcher)")
