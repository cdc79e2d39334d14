"""`python -m benchmarks --smoke` runs every suite end to end (tiny sizes, one repeat) and prints one line per
goal. Benchmarks are not timed tests: nothing here asserts a figure or a verdict, only that each suite still
executes against today's code and reports its goals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import SMOKE, SUITES

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.mpi]  # the capture suite runs the real MPI job

GOAL_LINE = re.compile(r"^(\S+)\s+.+\s(met|missed)$")


def test_every_suite_has_a_smoke_size() -> None:
    assert set(SMOKE) == set(SUITES)


def test_python_m_benchmarks_smoke_runs_every_suite_and_prints_its_goals() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for name in SUITES:
        assert re.search(rf"^== {name} \(\d+ s\) ==$", out.stdout, re.M), name
    summary = out.stdout.split("\ngoal ", 1)[1].splitlines()[1:]
    goals = {m.group(1) for line in summary if (m := GOAL_LINE.match(line))}
    expected = {"capture_2_ranks", "flush_zstd_parquet", "pipeline_vs_ccxt_parsing", "ring_4096_busy"}
    expected |= {f"growth_{step}_per_{unit}" for step in ("ohlcv_1m", "funding_rates", "opportunities", "book_depth")
                 for unit in ("hour", "series")}  # fmt: skip
    assert expected <= goals, sorted(expected - goals)
    assert len(goals) == len(summary)  # every summary line is a goal line
