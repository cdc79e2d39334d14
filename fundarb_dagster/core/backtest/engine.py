"""The vectorized backtest engine: whole time axis and whole parameter grid at once, arrays `(G, T, P)`
(grid points x bars x pairs). No Python loop over time.

Rules (the reference event loop in tests/core/backtest/reference_loop.py implements the same, plainly):

1. Desired direction `D[t]` per pair from its signal (expected carry APR known at t), with hysteresis:
   enter +1 when `signal >= enter_apr`, leave when `signal <= exit_apr`; reverse -1 (where allowed) when
   `signal <= -(enter_apr + reverse_cost)`, leave when `signal >= -(exit_apr + reverse_cost)`. NaN: flat.
2. An *episode* starts when D becomes non-zero or flips. It is held at most `max_hold_h`; after that, and
   after a liquidation or risk stop, the pair stays flat until the episode ends (no churning re-entry).
3. Sizing: both legs hold the same units (delta-neutral in the underlying): `units` when set (a fixed
   size), else `q = notional / mid_A` at the episode start and again every `rebalance_h` (the hedge is
   resized to the target notional and each perp's isolated wallet reset to `notional / leverage`: collateral
   moved between venues). Capital is split evenly over the pairs; each pair's notional = capital share /
   (spot legs + perp legs / leverage). Sizing by capacity (`sizing="capacity"`, `PairSet.size_cap`): that
   notional capped at the capacity of the pair's captured books at the episode's entry (sizing.py).
4. Accounting per bar `u` for positions decided at `u-1`: basis PnL marked to mid; funding booked in bar u
   (`panel.funding_cash`); borrow on a short spot leg; fees and slippage on every traded quantity at `u`.
5. Liquidation: each perp leg's liquidation price (accounting.liquidation_price) uses the wallet after the
   funding booked up to `u-1`; if the bar's reference high (short) / low (long) crosses it, the leg is closed
   at that price (no funding for that bar, liquidation fee and forfeited maintenance margin charged) and the
   other leg at mid. Risk stop: when the reference close is within `stop_distance` of the liquidation price,
   both legs close at mid at `u`.
6. Drawdown stop (`drawdown_stop` > 0): at each bar `u` the book's equity marked before the trades decided at
   `u` (the previous bar's equity plus bar u's basis, funding, borrow and liquidation items: `block.pair_mark`)
   is compared with the peak of the capital and every earlier bar's equity. When `1 - marked / peak` reaches
   `drawdown_stop`, every pair closes at `u` (at mid, paying fees and slippage) and the run trades no more.
   Liquidations and risk stops of bar u still happen; nothing after it does.

Where they live: this module is the public engine (parameters, `simulate`, `run_backtest`); block.py the
set-up both block simulators share (legs, rules 1-3, rule 4's costs); full_block.py the full simulator (every
per-bar array); grid_block.py the grid-sharing one sweeps use; records.py the trade, position and book tables.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .block import BLOCK_CELLS, Block, Legs, block_step, legs_of
from .full_block import DETAIL, SIZED, simulate_full
from .grid_block import SWEEP_BLOCK_CELLS, simulate_grid
from .metrics import drawdown, performance
from .panel import Panel
from .records import name_rank, open_positions, position_table, timestamps, trade_table
from .sizing import SIZINGS
from .strategies import PairSet

GRID_FIELDS = ("enter_apr", "exit_apr", "max_hold_h", "leverage", "rebalance_h", "stop_distance", "drawdown_stop")


@dataclass(frozen=True)
class BacktestParams:
    enter_apr: float = 0.10  # enter when expected carry (APR, fraction) reaches this
    exit_apr: float = 0.02  # leave when it falls to this (0 <= exit < enter)
    max_hold_h: float = 0.0  # 0: no limit
    leverage: float = 3.0  # perp legs' leverage (isolated margin = notional / leverage)
    rebalance_h: float = 0.0  # resize to target notional every N hours; 0: never
    stop_distance: float = 0.0  # risk stop when within this fraction of the liquidation price; 0: off
    drawdown_stop: float = 0.0  # rule 6: stop trading when the drawdown from the peak reaches this; 0: off
    capital: float = 1_000_000.0
    execution: str = "taker"  # "taker": taker fee + half-spread; "maker": maker fee, no spread crossed
    slippage_bps: float = 2.0  # half-spread model where no quotes were recorded
    units: float = 0.0  # > 0: hold this many units of the underlying per leg (fixed size); 0: rule 3's notional
    sizing: str = "even"  # rule 3: "even" capital split, or "capacity": capped at the books' capacity (sizing.py)

    def __post_init__(self) -> None:
        validate_params({f: np.array([getattr(self, f)], dtype=float) for f in GRID_FIELDS})
        if self.capital <= 0:
            raise ValueError(f"capital: {self.capital!r} must be > 0")
        if self.execution not in ("taker", "maker"):
            raise ValueError(f"execution: {self.execution!r} must be 'taker' or 'maker'")
        if self.slippage_bps < 0:
            raise ValueError(f"slippage_bps: {self.slippage_bps!r} must be >= 0")
        if not (self.units >= 0 and np.isfinite(self.units)):
            raise ValueError(f"units: {self.units!r} must be >= 0 (0: size by notional)")
        if self.sizing not in SIZINGS:
            raise ValueError(f"sizing: {self.sizing!r} must be one of {SIZINGS}")
        if self.sizing == "capacity" and self.units > 0:
            raise ValueError(f"sizing: 'capacity' sizes by notional; units: {self.units!r} must be 0 with it")


def validate_params(grid: dict[str, np.ndarray]) -> None:
    """Clear errors for impossible parameter values (naming the field and the value)."""
    enter, exit_ = grid["enter_apr"], grid["exit_apr"]
    checks = [
        ("exit_apr", exit_, exit_ < 0, "must be >= 0"),
        ("enter_apr", enter, enter <= exit_, "must be > exit_apr"),
        ("leverage", grid["leverage"], grid["leverage"] <= 0, "must be > 0"),
        ("max_hold_h", grid["max_hold_h"], grid["max_hold_h"] < 0, "must be >= 0"),
        ("rebalance_h", grid["rebalance_h"], grid["rebalance_h"] < 0, "must be >= 0"),
        ("stop_distance", grid["stop_distance"], grid["stop_distance"] < 0, "must be >= 0"),
        ("drawdown_stop", grid["drawdown_stop"], (grid["drawdown_stop"] < 0) | (grid["drawdown_stop"] >= 1),
         "must be in [0, 1) (0: off)"),
    ]  # fmt: skip
    for name, values, bad, why in checks:
        bad = np.asarray(bad) | ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"{name}: {float(np.asarray(values)[bad][0])!r} {why}")


def make_grid(base: BacktestParams, axes: dict[str, list[float]] | None = None) -> dict[str, np.ndarray]:
    """Cartesian product of `axes` over `base`'s grid fields -> `{field: (G,) array}`."""
    axes = axes or {}
    for name in axes:
        if name not in GRID_FIELDS:
            raise ValueError(f"grid: {name!r} is not a grid field; expected one of {GRID_FIELDS}")
    names = list(axes)
    combos = list(itertools.product(*(axes[n] for n in names))) or [()]
    grid = {f: np.full(len(combos), float(getattr(base, f))) for f in GRID_FIELDS}
    for k, n in enumerate(names):
        grid[n] = np.array([c[k] for c in combos], dtype=float)
    validate_params(grid)
    return grid


def prepare_legs(panel: Panel, pairs: PairSet, params: BacktestParams) -> tuple[Legs, Legs]:
    """Both legs' arrays gathered once from the panel (a sweep reuses them for every grid chunk)."""
    return legs_of(panel, pairs, params.execution, params.slippage_bps)


def simulate(
    panel: Panel,
    pairs: PairSet,
    grid: dict[str, np.ndarray],
    params: BacktestParams,
    detail: bool = True,
    legs: tuple[Legs, Legs] | None = None,
) -> dict[str, Any]:
    """Run the accounting for every grid point, in blocks of pairs.

    detail=True: the full simulator (full_block.py), all grid points at once on `(G, P, T)` arrays; returns the
    `(G, T, P)` arrays the trade/position tables need, per-bar attribution and gross exposure, and the
    aggregates below. detail=False (sweeps): the grid-sharing simulator (grid_block.py), which shares the work
    of grid points differing only in leverage and returns only the aggregates the metrics need: equity `(G, T)`,
    in_market `(G, T)`, attribution totals, traded_notional, entries, held_pair_bars, liquidations, stops `(G,)`
    (equal to the full simulator's to ~1e-14 of capital: only the order of floating-point sums differs), and
    `halt` `(G,)`, the bar rule 6 stopped trading at (T: never).

    Rule 6 needs the whole book's equity, so it is a second pass: the first runs every block without it and
    finds each point's stop bar (`halt_bars`; nothing before that bar depends on the stop), the second re-runs
    only the points that stop. Without `drawdown_stop` there is one pass."""
    T, P = pairs.signal.shape
    if params.units > 0 and not detail:
        raise ValueError(f"units: {params.units!r} (fixed size) runs in full backtests only, not in sweeps")
    legs = legs if legs is not None else prepare_legs(panel, pairs, params)
    dd = np.asarray(grid["drawdown_stop"], dtype=float)
    total, blocks = _run_blocks(panel, pairs, grid, params, detail, legs, mark=bool((dd > 0).any()))
    halt = np.full(len(dd), T, dtype=np.int64)
    if "mark_t" in total:
        halt = halt_bars(params.capital, total["pnl_t"], total["mark_t"], dd)
        stopped = np.flatnonzero(halt < T)
        if len(stopped) and detail:  # the tables need every point's arrays: run them all again
            total, blocks = _run_blocks(panel, pairs, grid, params, detail, legs, halt=halt)
        elif len(stopped):  # a sweep: only the points that stop
            sub = {k: np.asarray(v)[stopped] for k, v in grid.items()}
            again, _ = _run_blocks(panel, pairs, sub, params, detail, legs, halt=halt[stopped])
            _replace_points(total, again, stopped)
    result = aggregates(params.capital, total, halt)
    if detail:
        result.update(_joined_detail(blocks, legs))
    return result


def aggregates(capital: float, total: dict[str, Any], halt: np.ndarray) -> dict[str, Any]:
    """What `simulate` returns besides the per-cell arrays, from a pass's totals (`_run_blocks`, or the fused
    simulator's for run_backtest): equity, attribution totals, in_market, traded_notional, the counters, `halt`,
    and, with per-bar parts (detail), the per-bar attribution and gross exposure."""
    result: dict[str, Any] = {
        "equity": capital + np.cumsum(total["pnl_t"], axis=1),
        "attribution": {k: v for k, v in total["parts"].items() if k != "traded_notional"},
        "in_market": total["in_market"],
        "traded_notional": total["parts"]["traded_notional"],
        "entries": total["entries"],
        "held_pair_bars": total["held_pair_bars"],
        "liquidations": total["liquidations"],
        "stops": total["stops"],
        "halt": halt,
    }
    if "parts_t" in total:
        result["attribution_t"] = {k: v for k, v in total["parts_t"].items() if k != "traded_notional"}
        result["gross_exposure"] = total["gross_exposure"]
    return result


def halt_bars(capital: float, pnl_t: np.ndarray, mark_t: np.ndarray, drawdown_stop: np.ndarray) -> np.ndarray:
    """Rule 6: per grid point, the first bar whose marked equity is `drawdown_stop` below the peak of the
    capital and the earlier bars' equity (T where never, or where the stop is off)."""
    G, T = pnl_t.shape
    before = np.empty((G, T))
    before[:, 0] = capital
    before[:, 1:] = capital + np.cumsum(pnl_t[:, :-1], axis=1)  # equity after the bar before
    peak = np.maximum.accumulate(before, axis=1)
    marked = before + mark_t
    with np.errstate(divide="ignore", invalid="ignore"):
        drawn = 1.0 - marked / np.maximum(peak, marked)
    limit = np.asarray(drawdown_stop, dtype=float).reshape(G, 1)
    hit = (limit > 0) & (drawn >= limit)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), T).astype(np.int64)


def _run_blocks(
    panel: Panel,
    pairs: PairSet,
    grid: dict[str, np.ndarray],
    params: BacktestParams,
    detail: bool,
    legs: tuple[Legs, Legs],
    halt: np.ndarray | None = None,
    mark: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One pass of the block simulators over every block of pairs: their aggregates added up, and (detail) each
    block's per-bar arrays."""
    T, P = pairs.signal.shape
    G = len(grid["enter_apr"])
    signal = np.ascontiguousarray(pairs.signal.T)
    g = {name: np.asarray(grid[name], dtype=float).reshape(G, 1, 1) for name in GRID_FIELDS}
    stop = None if halt is None else np.asarray(halt, dtype=np.int64).reshape(G, 1, 1)
    cap = size_caps(pairs, params)
    # detail: the full (G, P, T) arrays for the tables; otherwise the grid-sharing path (same aggregates), whose
    # events are priced per unit whatever the notional: leverage tiers and capacity caps depend on the
    # notional, so a sweep with either runs the full simulator (without the tables)
    full = detail or bool(panel.tiers) or cap is not None
    cells = BLOCK_CELLS // max(G, 1) if full else (BLOCK_CELLS if G == 1 else SWEEP_BLOCK_CELLS)
    step = block_step(T, cells)
    total: dict[str, Any] = {}
    blocks: list[dict[str, Any]] = []
    for lo in range(0, P, step):
        block = Block.of(
            signal, legs, pairs, slice(lo, min(lo + step, P)), params.capital / P, panel.bar_h, params.units, cap
        )
        out = simulate_full(block, g, detail, stop, mark) if full else simulate_grid(block, g, stop, mark)
        for key, value in out.items():
            if key in ("detail", "parts_t", "parts"):
                continue
            total[key] = (
                value if key not in total else (total[key] | value if value.dtype == bool else total[key] + value)
            )
        for kind in ("parts", "parts_t") if detail else ("parts",):
            acc = total.setdefault(kind, {})
            for k, v in out[kind].items():
                acc[k] = v if k not in acc else acc[k] + v
        if detail:
            blocks.append(out["detail"])
    return total, blocks


def size_caps(pairs: PairSet, params: BacktestParams) -> np.ndarray | None:
    """The capacities rule 3 caps the notional at: the pairs' under sizing by capacity (all NaN, the even split,
    where none were computed), None under the even split."""
    if params.sizing != "capacity":
        return None
    return pairs.size_cap if pairs.size_cap is not None else np.full(pairs.signal.shape, np.nan)


def _replace_points(total: dict[str, Any], again: dict[str, Any], points: np.ndarray) -> None:
    """Grid points `points` of a pass's aggregates replaced by a second pass's (rule 6)."""

    def replaced(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = np.array(old, copy=True)  # blocks may share arrays (e.g. zeros of parts a block lacks)
        out[points] = new
        return out

    for key, value in again.items():
        if key == "parts":
            total[key] = {k: replaced(total[key][k], v) for k, v in value.items()}
        elif key != "mark_t":
            total[key] = replaced(total[key], value)


def _joined_detail(blocks: list[dict[str, Any]], legs: tuple[Legs, Legs]) -> dict[str, Any]:
    """The blocks' per-bar arrays joined along the pairs, back in the panel's `(G, T, P)` order, and the legs'
    costs the trade table prices with."""
    out: dict[str, Any] = {}
    for name in (*DETAIL, *(SIZED if "size_src" in blocks[0] else ())):
        joined = np.concatenate([b[name] for b in blocks], axis=1)
        out[name] = np.ascontiguousarray(joined.transpose(0, 2, 1))  # back to (G, T, P)
    out["parts"] = {
        k: np.ascontiguousarray(np.concatenate([b["parts"][k] for b in blocks], axis=1).transpose(0, 2, 1))
        for k in blocks[0]["parts"]
    }
    for leg, lg in zip(("a", "b"), legs, strict=True):
        out["hs_" + leg] = lg.hs.T
        out["fee_" + leg] = np.broadcast_to(lg.fee, lg.hs.shape).T  # (T, P): dated fees vary by bar
        out["taker_" + leg] = lg.taker.ravel()
    return out


@dataclass
class BacktestResult:
    params: BacktestParams
    strategy: str
    equity: pd.DataFrame  # ts, equity, drawdown, pnl parts per bar, gross_exposure, in_market
    trades: pd.DataFrame  # one row per leg trade
    positions: pd.DataFrame  # one row per held episode (round trip)
    open_positions: pd.DataFrame  # per leg, at the last bar: what risk_report stresses
    metrics: dict[str, float]
    attribution: dict[str, float]
    arrays: dict[str, Any]


def run_backtest(panel: Panel, pairs: PairSet, params: BacktestParams, strategy: str = "") -> BacktestResult:
    """One full-accounting backtest with its equity curve, trades, positions and metrics: the fused simulator
    (fused.py), whose figures equal the vectorized engine's (`simulate` with detail=True and records.py)."""
    from .fused import run_fused  # here, not at the top: importing numba costs ~0.5 s that only backtests need

    T = pairs.signal.shape[0]
    rank = name_rank(pairs.names)
    run = run_fused(panel, pairs, params, T, rank)
    halt = np.array([T], dtype=np.int64)
    if params.drawdown_stop > 0:  # rule 6: the stop bar from the first pass's marked equity, then a second pass
        pnl_t, mark_t = run.totals["pnl_t"], run.totals["mark_t"]
        halt = halt_bars(params.capital, pnl_t, mark_t, np.array([params.drawdown_stop]))
        if halt[0] < T:
            run = run_fused(panel, pairs, params, int(halt[0]), rank)
    sim = {**aggregates(params.capital, run.totals, halt), **run.cells}
    ti, tf, pi, pf = run.trade_ints, run.trade_floats, run.position_ints, run.position_floats
    trade_frame = trade_table(panel, pairs, ti[0], ti[1], ti[2], tf[0], tf[1], tf[2], tf[3], ti[3])
    position_frame = position_table(panel, pairs, pi[0], pi[1], pi[2], pi[3], pi[4], pf[0], pf[1], pf[2], pf[3], pf[4],
                                    pi[5], pi[6], pf[5])  # fmt: skip
    return backtest_result(panel, pairs, params, strategy, sim, trade_frame, position_frame)


def backtest_result(
    panel: Panel,
    pairs: PairSet,
    params: BacktestParams,
    strategy: str,
    sim: dict[str, Any],
    trade_frame: pd.DataFrame,
    position_frame: pd.DataFrame,
) -> BacktestResult:
    """A BacktestResult from a detailed simulation of one parameter set (`simulate` with detail=True, or the
    fused simulator's) and its trade and position tables: the equity table, the open book and the metrics."""
    equity = sim["equity"][0]
    metrics = {k: float(v[0]) for k, v in grid_metrics(sim, panel.bar_h).items()}
    metrics["liquidations"] = float(sim["liquidations"][0])
    metrics["stops"] = float(sim["stops"][0])
    eq = pd.DataFrame(
        {
            "ts": timestamps(panel.ts_ms),
            "equity": equity,
            "drawdown": drawdown(equity[None])[0],
            **{f"{k}_pnl": v[0] for k, v in sim["attribution_t"].items()},
            "gross_exposure": sim["gross_exposure"][0],
            "in_market": sim["in_market"][0],
        }
    )
    book = open_positions(panel, pairs, sim, params.leverage)
    attribution = {k: float(v[0]) for k, v in sim["attribution"].items()}
    return BacktestResult(params, strategy, eq, trade_frame, position_frame, book, metrics, attribution, sim)


def grid_metrics(sim: dict[str, Any], bar_h: float) -> dict[str, np.ndarray]:
    """metrics.performance of every grid point of a `simulate` result."""
    return performance(
        sim["equity"], bar_h, sim["in_market"], sim["traded_notional"], sim["entries"], sim["held_pair_bars"]
    )
