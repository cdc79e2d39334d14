"""Backtest speed: the vectorized engine against the plain event loop (and vectorbt if installed), same data.

One full-accounting perp-perp backtest over 2 years of hourly bars x 20 underlyings x 3 venues (60 perps,
60 cross-venue pairs: ~1.05 M pair-bars), then a 100-point parameter sweep, each timed side by side with the
reference event loop of tests/core/backtest/reference_loop.py on the same data in the same run. Then what a
user calls, `run_backtest` with its tables (the fused simulator, core/backtest/fused.py), interleaved (5 rounds)
with the vectorized path it replaced (`simulate` with every per-bar array, then records.py's tables: the same
tables, figure for figure), the engine's aggregates alone and vectorbt (`bench` extra) replaying the engine's own
orders through `Portfolio.from_orders`, on both legs and on one leg: the same trades on the same prices, without
funding, margin or liquidation. The loop is
too slow to run 100 times: the sweep's loop time is the per-point loop time measured on a few points times
100 (printed as extrapolated). Results are compared, not just timed. Times are medians of several runs, wall
and CPU (the process's own CPU time, less sensitive to other work on a shared machine), with the load average.

    python -m benchmarks.bench_backtest            # full size
    python -m benchmarks.bench_backtest --quick    # small size, seconds
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import Goal, interleaved, load, ratios, spread  # noqa: E402
from fundarb_dagster.core.backtest import BacktestParams, get_strategy, make_grid, run_backtest, simulate, sweep  # noqa: E402
from fundarb_dagster.core.backtest.engine import GRID_FIELDS, backtest_result, prepare_legs  # noqa: E402
from fundarb_dagster.core.backtest.records import positions, trades  # noqa: E402
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
    run_backtest(panel, pairs, params, "perp_perp")  # the first call imports numba and loads the compiled loop
    t_full, c_full, result = median_of(lambda: run_backtest(panel, pairs, params, "perp_perp"), repeat)
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

    found, report = goals(args.quick)
    print(f"\n== what a user calls: run_backtest, interleaved with the engine alone and vectorbt ==\n{report}")
    for goal in found:
        print(goal.line())


def vectorbt_cases(panel: Any, pairs: Any, result: Any) -> tuple[dict[str, Callable[[], Any]], str]:
    """vectorbt doing the same trading as `result`: `Portfolio.from_orders` replaying the engine's own target
    units on both legs of every pair (the same prices, the same orders, fee + half-spread as its fees), and on
    leg A alone (the one-leg work); with its order records counted, as a user reads them. Less work than
    run_backtest: no funding, margin, liquidation or drawdown rules. Empty when vectorbt is not installed."""
    try:
        import vectorbt as vbt  # optional, `bench` extra
    except ImportError:
        return {}, "vectorbt: not installed (optional `bench` extra: pip install -e '.[bench]')"
    sim = result.arrays
    P = len(pairs.leg_a)
    close = np.concatenate([panel.mid[:, pairs.leg_a], panel.mid[:, pairs.leg_b]], axis=1)
    size = np.concatenate([sim["xa"][0], sim["xb"][0]], axis=1)
    legs = prepare_legs(panel, pairs, result.params)  # each trade's fee rate and half-spread, (P, T) per leg
    fees = np.concatenate([np.broadcast_to(lg.fee, lg.hs.shape).T + lg.hs.T for lg in legs], axis=1)
    both = {"size": size, "size_type": "targetamount", "fees": fees, "init_cash": np.inf, "freq": "1h"}
    one = {**both, "size": size[:, :P], "fees": fees[:, :P]}

    def run(close_: np.ndarray, kwargs: dict[str, Any]) -> tuple[int, float]:
        pf = vbt.Portfolio.from_orders(close_, **kwargs)
        return int(pf.orders.count().sum()), float(pf.orders.fees.sum().sum())

    orders, costs = run(close, both)  # also compiles numba's kernels for these types
    run(close[:, :P], one)
    ours = float((result.trades["fee_usd"] + result.trades["slippage_usd"]).sum())
    if abs(costs - ours) > 1e-2 * ours:  # the same trading, up to liquidation closes priced at their level
        raise AssertionError(f"vectorbt replayed other orders: costs {costs:,.2f} vs the engine's {ours:,.2f}")
    note = (
        f"vectorbt {vbt.__version__} from_orders replaying the engine's target units: {orders:,} orders, "
        f"fees {costs:,.0f} USD vs run_backtest's {len(result.trades):,} trades, fees + slippage {ours:,.0f} USD"
    )
    return {
        "vectorbt_same_orders": lambda: run(close, both),
        "vectorbt_one_leg": lambda: run(close[:, :P], one),
    }, note


def goals(quick: bool) -> tuple[list[Goal], str]:
    """What a user calls, `run_backtest` (legs gathered, every table built), interleaved with the engine's
    aggregates alone (the part that is not tables) and with vectorbt replaying the same orders (both legs,
    and leg A alone), at ~1 M pair-bars (quick: ~0.2 M)."""
    hours = 24 * 150 if quick else 24 * 730
    panel = synthetic_panel(hours, UNDERLYINGS, with_spot=False, seed=1)
    pairs = get_strategy("perp_perp").pairs(panel, {})
    T, P = pairs.signal.shape
    params = BacktestParams(
        enter_apr=0.1, exit_apr=0.02, leverage=5, max_hold_h=240, rebalance_h=72, stop_distance=0.02
    )
    grid1 = {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}
    result = run_backtest(panel, pairs, params, "perp_perp")  # warms caches and lazy imports
    others, note = vectorbt_cases(panel, pairs, result)
    cpu: dict[str, list[float]] = {}

    def with_cpu(name: str, case: Callable[[], Any]) -> Callable[[], Any]:
        """The case, also recording its process CPU time (every case here is single-threaded: on a shared
        machine its CPU time is what its wall time would be on a quiet one)."""

        def run() -> Any:
            c0 = time.process_time()
            out = case()
            cpu.setdefault(name, []).append(time.process_time() - c0)
            return out

        return run

    def vectorized() -> Any:
        """What run_backtest did before the fused simulator: every per-bar array, then the tables found in them."""
        sim = simulate(panel, pairs, grid1, params, detail=True)
        return backtest_result(panel, pairs, params, "perp_perp", sim, trades(panel, pairs, sim),
                               positions(panel, pairs, sim))  # fmt: skip

    cases = {
        "run_backtest": lambda: run_backtest(panel, pairs, params, "perp_perp"),
        "vectorized_tables": vectorized,
        "engine_aggregates": lambda: simulate(panel, pairs, grid1, params, detail=False),
        **others,
    }
    times = interleaved({name: with_cpu(name, case) for name, case in cases.items()}, 5)
    per_million = [t * 1e6 / (T * P) for t in times["run_backtest"]]
    cpu_million = [t * 1e6 / (T * P) for t in cpu["run_backtest"]]
    ms, cpu_ms = statistics.median(per_million) * 1e3, statistics.median(cpu_million) * 1e3
    size = f"{T:,} bars x {P} pairs = {T * P:,} pair-bars"

    def row(name: str) -> str:
        return f"wall ms {spread(times[name], 1e3)}, CPU ms {spread(cpu[name], 1e3)}"

    lines = [
        f"carry backtest, full accounting: {size}; interleaved x5; {load()}",
        f"  run_backtest (fused simulator, equity/trades/positions/book tables) {row('run_backtest')}",
        f"  vectorized simulate + records tables (the same tables)            {row('vectorized_tables')}: "
        f"/ run_backtest {spread(ratios(cpu['vectorized_tables'], cpu['run_backtest']))}x CPU",
        f"  engine aggregates only (simulate detail=False, legs included)     {row('engine_aggregates')}",
        f"  run_backtest per 1 M pair-bars: wall ms {spread(per_million, 1e3)}, CPU ms {spread(cpu_million, 1e3)}",
        f"  {note}",
    ]
    lines += [f"  {split(panel, pairs, params)}", f"  {loop_floor(panel, pairs, params)}"]
    found = [
        Goal("backtest_run", f"{ms:.0f} ms/1M", "<= 100 ms per 1 M pair-bars", ms <= 100, size),
        Goal("backtest_run_cpu", f"{cpu_ms:.0f} ms/1M", "<= 100 ms CPU per 1 M pair-bars", cpu_ms <= 100, size),
    ]
    if others:
        # CPU time: each case is single-threaded, and on a shared machine wall ratios follow the other load
        same = ratios(cpu["vectorbt_same_orders"], cpu["run_backtest"])
        one = ratios(cpu["vectorbt_one_leg"], cpu["run_backtest"])
        lines += [
            f"  vectorbt from_orders, both legs (same orders) {row('vectorbt_same_orders')}: "
            f"vectorbt / run_backtest CPU {spread(same)}x (wall "
            f"{spread(ratios(times['vectorbt_same_orders'], times['run_backtest']))}x)",
            f"  vectorbt from_orders, leg A alone (one leg)    {row('vectorbt_one_leg')}: "
            f"vectorbt / run_backtest CPU {spread(one)}x (wall "
            f"{spread(ratios(times['vectorbt_one_leg'], times['run_backtest']))}x)",
        ]
        x = statistics.median(one)
        found.append(Goal("backtest_vs_vectorbt", f"{x:.2f}x", ">= 1x vectorbt's one-leg CPU time", x >= 1, size))
    else:
        found.append(Goal("backtest_vs_vectorbt", "not run", "vectorbt not installed", False, note))
    return found, "\n".join(lines)


def split(panel: Any, pairs: Any, params: Any, repeat: int = 5) -> str:
    """Where run_backtest's CPU time goes, each part timed alone (medians of `repeat`): the fused loop
    (`run_fused`: the arrays laid out, the compiled loop), the trades and positions tables from its rows, and the
    rest (aggregates, equity table, metrics, open book: the whole call less the three); with the minor page
    faults of one whole call (fresh pages its outputs are written to, each zeroed by the OS on first touch)."""
    from fundarb_dagster.core.backtest.fused import run_fused
    from fundarb_dagster.core.backtest.records import name_rank, position_table, trade_table

    T = pairs.signal.shape[0]
    rank = name_rank(pairs.names)
    run = run_fused(panel, pairs, params, T, rank)
    ti, tf, pi, pf = run.trade_ints, run.trade_floats, run.position_ints, run.position_floats
    parts: dict[str, Callable[[], Any]] = {
        "whole": lambda: run_backtest(panel, pairs, params, "perp_perp"),
        "loop": lambda: run_fused(panel, pairs, params, T, rank),
        "trades": lambda: trade_table(panel, pairs, ti[0], ti[1], ti[2], tf[0], tf[1], tf[2], tf[3], ti[3]),
        "positions": lambda: position_table(
            panel, pairs, pi[0], pi[1], pi[2], pi[3], pi[4], pf[0], pf[1], pf[2], pf[3], pf[4], pi[5], pi[6], pf[5]
        ),
    }
    cpu: dict[str, list[float]] = {name: [] for name in parts}
    faults = []
    for _ in range(repeat):
        for name, part in parts.items():
            f0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
            part()
            cpu[name].append(time.process_time() - c0)
            if name == "whole":
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    med = {name: statistics.median(v) * 1e3 for name, v in cpu.items()}
    rest = med["whole"] - med["loop"] - med["trades"] - med["positions"]
    return (
        f"split, each part alone (CPU ms, medians of {repeat}): whole {med['whole']:.1f} = loop {med['loop']:.1f}"
        f" + trades table {med['trades']:.1f} ({ti.shape[1]:,} rows) + positions table {med['positions']:.1f}"
        f" ({pi.shape[1]:,} rows) + the rest {rest:.1f} (aggregates, equity, metrics, open book); "
        f"{statistics.median(faults):,.0f} minor page faults a call; {load()}"
    )


def loop_floor(panel: Any, pairs: Any, params: Any, repeat: int = 7) -> str:
    """The fused loop's floor in memory: the compiled kernel on the same inputs, writing into output arrays
    already in memory (the same ones each time) and into new ones (fresh pages, each zeroed by the OS on first
    touch), interleaved; the difference is what the loop's ~40 MB of per-cell arrays and its trade and position
    rows cost in page faults on this machine, whatever the code does."""
    from fundarb_dagster.core.backtest import fused
    from fundarb_dagster.core.backtest.records import name_rank

    captured: list[tuple[Any, ...]] = []
    kernel = fused._kernel

    def capture(*args: Any) -> Any:
        captured.append(args)
        return kernel(*args)

    fused._kernel = capture  # one run_fused, to get the kernel's arguments as it lays them out
    try:
        fused.run_fused(panel, pairs, params, pairs.signal.shape[0], name_rank(pairs.names))
    finally:
        fused._kernel = kernel
    args = captured[-1]  # the last call: a first one with row buffers too small only counts the rows
    cells, out = args[-2], args[-1]

    def fresh() -> Any:
        return kernel(*args[:-2], tuple(np.empty_like(a) for a in cells), tuple(np.empty_like(a) for a in out))

    cpu: dict[str, list[float]] = {"in memory": [], "fresh": []}
    for _ in range(repeat):
        for name, case in (("in memory", lambda: kernel(*args)), ("fresh", fresh)):
            c0 = time.process_time()
            case()
            cpu[name].append(time.process_time() - c0)
    mb = sum(a.nbytes for a in cells) / 1e6
    return (
        f"the loop alone (CPU ms, interleaved x{repeat}): outputs already in memory {spread(cpu['in memory'], 1e3)}, "
        f"fresh outputs {spread(cpu['fresh'], 1e3)} ({mb:.0f} MB of per-cell arrays + the rows' buffers, "
        f"{sum(a.nbytes for a in out) / 1e6:.0f} MB allocated)"
    )


if __name__ == "__main__":
    main()
