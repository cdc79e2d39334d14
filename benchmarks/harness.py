"""What every benchmark shares: cases run interleaved (A, B, A, B, ...) so a ratio compares the same moments
of a changing load, paired ratios summarised as median and min-max, peak memory of a worker process, and one
result line per goal (`name figure target met|missed`)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Goal:
    name: str
    figure: str  # the measured figure, with its unit
    target: str  # e.g. "<= 2x raw TA-Lib"
    met: bool
    detail: str = ""  # sizes, medians and ranges behind the figure

    def line(self) -> str:
        return f"{self.name:28s} {self.figure:>14s}  {self.target:34s} {'met' if self.met else 'missed'}"


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each case, run in turn (A, B, A, B, ...) `repeats` times."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            t0 = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - t0)
    return times


def spread(values: Sequence[float], scale: float = 1.0, fmt: str = ".3g") -> str:
    """`median (min-max, n=N)` of values times `scale`."""
    v = [x * scale for x in values]
    return f"{statistics.median(v):{fmt}} ({min(v):{fmt}}-{max(v):{fmt}}, n={len(v)})"


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-repeat ratios of two interleaved cases (each pair ran back to back under the same load)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def worker(module: str, *args: str) -> dict[str, Any]:
    """Run `python -m <module> --worker ...` and return the JSON object its last line prints."""
    out = subprocess.run(
        [sys.executable, "-m", module, "--worker", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: per address space, so it starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
