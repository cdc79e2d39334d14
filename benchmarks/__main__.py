"""Every performance goal in one command, one line each: `name figure target met|missed`.

    python -m benchmarks --quick    # small sizes, a few minutes on 2 cores (what CI may run)
    python -m benchmarks            # the sizes the goals are stated at
    python -m benchmarks --only indicators bars
    python -m benchmarks --smoke    # tiny sizes, one repeat: proves every suite runs (CI); verdicts mean nothing

Each goal's benchmark runs its cases interleaved (A, B, A, B, ...) at least 5 times and prints its sizes,
medians and min-max above the summary; `python -m benchmarks.bench_<name>` runs one alone with more detail.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

from benchmarks import (
    bench_backtest,
    bench_capture,
    bench_growth,
    bench_history,
    bench_indicators,
    bench_resample,
    bench_ring,
)
from benchmarks.harness import Goal, load

Suite = Callable[[], tuple[list[Goal], str]]
SUITES: dict[str, Callable[[bool], tuple[list[Goal], str]]] = {
    "indicators": bench_indicators.goals,
    "bars": bench_resample.bar_goals,
    "backtest": bench_backtest.goals,
    "growth": bench_growth.goals,
    "ring": bench_ring.goals,
    "capture": bench_capture.goals,
    "history": bench_history.goals,
}

# The smallest run of each suite (the suites of others' files at their smallest arguments): what CI runs to
# prove every benchmark still executes (tests/benchmarks/test_benchmarks_run.py), in well under a minute each.
SMOKE: dict[str, Suite] = {
    "indicators": lambda: bench_indicators.measure(10, 500, 1),
    "bars": lambda: bench_resample.measure_bars(5_000, 1),
    "backtest": lambda: bench_backtest.goals(True),
    "growth": lambda: bench_growth.goals(True, smoke=True),
    "ring": lambda: bench_ring.goals(True, smoke=True),
    "capture": lambda: bench_capture.goals(True, smoke=True),
    "history": lambda: bench_history.goals(True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves every benchmark runs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: proves every suite runs")
    parser.add_argument("--only", nargs="*", choices=sorted(SUITES), help="run these suites only")
    args = parser.parse_args()
    size = "smoke (the figures mean nothing)" if args.smoke else f"quick={args.quick}"
    print(f"{platform.node()} {platform.processor() or platform.machine()}; {load()}; {size}")
    found: list[Goal] = []
    for name in args.only or SUITES:
        t0 = time.perf_counter()
        goals, report = SMOKE[name]() if args.smoke else SUITES[name](args.quick)
        print(f"\n== {name} ({time.perf_counter() - t0:.0f} s) ==\n{report}", flush=True)
        found += goals
    print(f"\n{load()}\n{'goal':28s} {'figure':>14s}  {'target':34s} verdict")
    for goal in found:
        print(goal.line())


if __name__ == "__main__":
    main()
