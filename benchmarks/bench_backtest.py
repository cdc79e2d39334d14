"""Backtest speed: the vectorized engine against the plain event loop (and vectorbt if installed), same data.

One full-accounting perp-perp backtest over 2 years of hourly bars x 20 underlyings x 3 venues (60 perps,
60 cross-venue pairs: ~1.05 M pair-bars), then a 100-point parameter sweep, each timed side by side with the
reference event loop of tests/core/backtest/reference_loop.py on the same data in the same run. The loop is
too slow to run 100 times: the sweep's loop time is the per-point loop time measured on a few points times
100 (printed as extrapolated). Results are compared, not just timed. Times are medians of several runs, wall
and CPU (the process's own CPU time, less sensitive to other work on a shared machine), with the load average.

    python -m benchmarks.bench_backtest            # full size
    python -m benchmarks.bench_backtest --quick    # small size, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import Goal, interleaved, load, spread  # noqa: E402
from fundarb_dagster.core.backtest import BacktestParams, get_strategy, make_grid, run_backtest, simulate, sweep  # noqa: E402
from fundarb_dagster.core.backtest.engine import GRID_FIELDS, prepare_legs  # noqa: E402
from fundarb_dagster.core.backtest.synthetic import synthetic_panel  # noqa: E402
from tests.core.backtest.reference_loop import reference_backtest  # noqa: E402

UNDERLYINGS = tuple(f"C{i:02d}" for i in range(20))
SWEEP_AXES = {
    "enter_apr": [0.05, 0.1, 0.15, 0.2, 0.3],
    "exit_apr": [0.0, 0.02],
    "leverage": [1.0, 2.0, 3.0, 5.0, 10.0],
    "max_hold_h": [0.0, 168.0],
}  # 5 x 2 x 5 x 2 = 100 points


def median_of(fn, repeat: int) -> tuple[float, float, object]:  # noqa: ANN001
    """Median wall and CPU seconds of `repeat` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small size (60 days x 4 underlyings), seconds")
    ap.add_argument("--loop-points", type=int, default=2, help="sweep points the event loop runs (extrapolated)")
    args = ap.parse_args()
    hours = 24 * 60 if args.quick else 24 * 730
    underlyings = UNDERLYINGS[:4] if args.quick else UNDERLYINGS
    t0 = time.perf_counter()
    panel = synthetic_panel(hours, underlyings, with_spot=False, seed=1)
    pairs = get_strategy("perp_perp").pairs(panel, {})
    T, P = pairs.signal.shape
    print(
        f"data: {T} hourly bars x {len(panel.markets)} perps ({T * len(panel.markets):,} price rows), "
        f"{P} pairs = {T * P:,} pair-bars; built in {time.perf_counter() - t0:.2f} s"
    )
    params = BacktestParams(
        enter_apr=0.1, exit_apr=0.02, leverage=5, max_hold_h=240, rebalance_h=72, stop_distance=0.02
    )
    grid1 = {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}
    repeat = 7 if args.quick else 5
    print(f"{load()}; medians of {repeat} runs (loop: 1 run)")
    t_prep, c_prep, legs = median_of(lambda: prepare_legs(panel, pairs, params), repeat)
    t_core, c_core, sim = median_of(lambda: simulate(panel, pairs, grid1, params, detail=False, legs=legs), repeat)
    t_arr, c_arr, _ = median_of(lambda: simulate(panel, pairs, grid1, params, detail=True, legs=legs), repeat)
    t_full, c_full, result = median_of(lambda: run_backtest(panel, pairs, params, "perp_perp"), max(1, repeat // 2))
    t_loop, _, ref = median_of(lambda: reference_backtest(panel, pairs, params), 1)
    diff = float(np.max(np.abs(sim["equity"][0] - ref["equity"])) / params.capital)
    print("\n== one full-accounting backtest ==                 wall         cpu")
    print(f"gather both legs' arrays from the panel (once):  {t_prep * 1e3:9.1f} ms {c_prep * 1e3:9.1f} ms")
    print(f"engine, aggregates (equity, PnL parts, metrics): {t_core * 1e3:9.1f} ms {c_core * 1e3:9.1f} ms")
    print(f"engine, every per-bar array (for the tables):    {t_arr * 1e3:9.1f} ms {c_arr * 1e3:9.1f} ms")
    print(
        f"run_backtest (+ trades/positions/book tables):   {t_full * 1e3:9.1f} ms {c_full * 1e3:9.1f} ms "
        f"({len(result.trades):,} trades, {int(result.metrics['liquidations'])} liquidations)"
    )
    print(f"event loop (reference):                          {t_loop * 1e3:9.1f} ms")
    print(
        f"speed-up engine (aggregates) vs loop:            {t_loop / t_core:9.1f} x   (target >= 50 x; "
        f"<= 100 ms for ~1 M rows)"
    )
    print(f"speed-up engine (every array) vs loop:           {t_loop / t_arr:9.1f} x")
    print(f"max |equity engine - loop| / capital:            {diff:.2e}")

    grid = make_grid(params, SWEEP_AXES)
    G = len(grid["enter_apr"])
    t_sweep, c_sweep, table = median_of(lambda: sweep(panel, pairs, params, SWEEP_AXES), 3)
    k = max(1, args.loop_points)
    t0 = time.perf_counter()
    from dataclasses import replace

    for i in range(k):
        point = replace(params, **{f: float(grid[f][i]) for f in SWEEP_AXES})
        ref_i = reference_backtest(panel, pairs, point)
        assert abs(ref_i["equity"][-1] - table["final_equity"].iloc[i]) <= 1e-9 * params.capital, i
    t_loop_pt = (time.perf_counter() - t0) / k
    print(f"\n== {G}-point parameter sweep ({T * P * G:,} pair-bar-points) ==")
    print(f"vectorized sweep (median of 3), wall / cpu:      {t_sweep:9.2f} s {c_sweep:9.2f} s   (target <= 5 s)")
    print(f"event loop, {k} points measured, x{G} extrapolated: {t_loop_pt * G:9.2f} s")
    print(f"speed-up:                                        {t_loop_pt * G / t_sweep:9.1f} x")
    print(f"best sharpe in grid: {table['sharpe'].max():.2f}; checked {k} points equal to the loop")
    print(f"\n{load()}")

    try:
        import vectorbt as vbt  # optional, `bench` extra
    except ImportError:
        print("\nvectorbt: not installed (optional `bench` extra); skipped")
        return
    close = panel.mid[:, pairs.leg_a]
    entries = pairs.signal >= params.enter_apr
    exits = pairs.signal <= params.exit_apr
    vbt.Portfolio.from_signals(close[:100], entries[:100], exits[:100])  # JIT warm-up
    t_vbt, _, _ = median_of(lambda: vbt.Portfolio.from_signals(close, entries, exits, fees=0.0005), repeat)
    print(
        f"\nvectorbt Portfolio.from_signals (plain threshold signal, same close array): {t_vbt * 1e3:.1f} ms "
        f"(no funding, margin or liquidation: engine/vectorbt = {t_core / t_vbt:.2f})"
    )


if __name__ == "__main__":
    main()


def goals(quick: bool) -> tuple[list[Goal], str]:
    """What a user calls, `run_backtest` (legs gathered, every table built), interleaved with the engine's
    aggregates alone (the part that is not tables), at ~1 M pair-bars (quick: ~0.2 M)."""
    hours = 24 * 150 if quick else 24 * 730
    panel = synthetic_panel(hours, UNDERLYINGS, with_spot=False, seed=1)
    pairs = get_strategy("perp_perp").pairs(panel, {})
    T, P = pairs.signal.shape
    params = BacktestParams(
        enter_apr=0.1, exit_apr=0.02, leverage=5, max_hold_h=240, rebalance_h=72, stop_distance=0.02
    )
    grid1 = {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}
    run_backtest(panel, pairs, params, "perp_perp")  # warm caches and lazy imports
    times = interleaved(
        {
            "run_backtest": lambda: run_backtest(panel, pairs, params, "perp_perp"),
            "engine_aggregates": lambda: simulate(panel, pairs, grid1, params, detail=False),
        },
        5,
    )
    per_million = [t * 1e6 / (T * P) for t in times["run_backtest"]]
    ms = statistics.median(per_million) * 1e3
    size = f"{T:,} bars x {P} pairs = {T * P:,} pair-bars"
    report = (
        f"carry backtest, full accounting: {size}; interleaved; {load()}\n"
        f"  run_backtest (legs, engine, equity/trades/positions/book tables) ms {spread(times['run_backtest'], 1e3)}\n"
        f"  engine aggregates only (simulate detail=False, legs included)   ms "
        f"{spread(times['engine_aggregates'], 1e3)}\n"
        f"  run_backtest per 1 M pair-bars ms {spread(per_million, 1e3)}"
    )
    return [Goal("backtest_run", f"{ms:.0f} ms/1M", "<= 100 ms per 1 M pair-bars", ms <= 100, size)], report
