"""Parameter sweeps (the whole grid in one vectorized pass, chunked to bound memory) and walk-forward.

Walk-forward (`walk_forward`): the bars are cut into an initial training window and `folds` test windows that
follow each other. For each fold the grid is swept on its training window (expanding: every bar before the
test window; rolling: the same number of bars as the first training window, ending where the test starts),
the point with the best `metric` there is chosen, and the grid is reported on the test window, which starts
flat with fresh capital and closes every position on its last bar (a round trip: no open position is marked
without its exit costs). The chosen points' test windows, chained by their returns, are the stitched
out-of-sample equity: nothing of a test window reached the choice that trades it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .engine import GRID_FIELDS, BacktestParams, grid_metrics, make_grid, prepare_legs, simulate
from .metrics import METRIC_NAMES, performance
from .panel import Panel
from .strategies import PairSet

# Grid points per simulate() call: about this many (grid x bar x pair) cells. The sweep path's memory does not grow
# with the points of a call (they are visited one by one); chunks exist for progress reports, and never split a
# group of points that differ only in leverage (those share most of the work).
CELLS_PER_CHUNK = 20_000_000
SHARED_FIELDS = [f for f in GRID_FIELDS if f != "leverage"]


def sweep(
    panel: Panel,
    pairs: PairSet,
    base: BacktestParams,
    axes: dict[str, list[float]],
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Metrics of every point of the grid (cartesian product of `axes` over `base`): one row per point."""
    grid = make_grid(base, axes)
    G = len(grid["enter_apr"])
    T, P = pairs.signal.shape
    # points sorted so that those sharing everything but the leverage are adjacent, cut at group boundaries
    order = np.lexsort([grid[f] for f in reversed(SHARED_FIELDS)])
    keys = np.stack([grid[f][order] for f in SHARED_FIELDS], axis=1)
    new_group = np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)]
    per_chunk = max(1, CELLS_PER_CHUNK // max(T * P, 1))
    cuts, lo = [], 0
    for i in np.flatnonzero(new_group)[1:]:
        if i - lo >= per_chunk:
            cuts.append(i)
            lo = i
    frames = []
    legs = prepare_legs(panel, pairs, base)  # gathered once for the whole grid
    done = 0
    for idx in np.split(order, cuts):
        sub = {k: v[idx] for k, v in grid.items()}
        sim = simulate(panel, pairs, sub, base, detail=False, legs=legs)
        m = grid_metrics(sim, panel.bar_h)
        part = pd.DataFrame({**sub, **m})
        part["final_equity"] = sim["equity"][:, -1]
        part["liquidations"] = sim["liquidations"]
        for k, v in sim["attribution"].items():
            part[f"{k}_pnl"] = v
        part.index = idx
        frames.append(part)
        done += len(idx)
        if progress:
            progress(done, G)
    out = pd.concat(frames).sort_index().reset_index(drop=True)  # back in grid order
    out.insert(0, "point", np.arange(G))
    return out


WALK_MODES = ("expanding", "rolling")
FOLD_COLUMNS = ["fold", "train_start", "train_end", "test_start", "test_end", "chosen", "train_score", "test_score"]


def walk_forward_windows(
    n_bars: int, folds: int, mode: str = "expanding", train_bars: int = 0, test_bars: int = 0
) -> list[tuple[int, int, int, int]]:
    """`(train_start, train_end, test_start, test_end)` bar indices of each fold, ends exclusive. `train_bars`,
    `test_bars` 0: the bars cut into `folds + 1` equal chunks, the first to train on, the last test window
    taking the remainder."""
    if mode not in WALK_MODES:
        raise ValueError(f"mode: {mode!r} must be one of {WALK_MODES}")
    if folds < 1:
        raise ValueError(f"folds: {folds!r} must be >= 1")
    chunk = n_bars // (folds + 1)
    remainder_to_last = not test_bars  # equal chunks: the last test window runs to the end
    train_bars, test_bars = train_bars or chunk, test_bars or chunk
    if train_bars < 2 or test_bars < 2 or train_bars + folds * test_bars > n_bars:
        raise ValueError(
            f"folds: {folds!r} windows of {test_bars} test bars after {train_bars} training bars need more than "
            f"the {n_bars} bars there are (each window needs 2 or more)"
        )
    out = []
    for k in range(folds):
        test_start = train_bars + k * test_bars
        test_end = n_bars if k == folds - 1 and remainder_to_last else test_start + test_bars
        train_start = 0 if mode == "expanding" else test_start - train_bars
        out.append((train_start, test_start, test_start, test_end))
    return out


def _closing(pairs: PairSet, start: int, stop: int) -> PairSet:
    """The pairs' signals on bars `[start, stop)`, flat on the last bar: every position closes there."""
    window = pairs.bars(start, stop)
    signal = window.signal.copy()
    signal[-1] = np.nan
    return replace(window, signal=signal)


def walk_forward(
    panel: Panel,
    pairs: PairSet,
    base: BacktestParams,
    axes: dict[str, list[float]],
    folds: int = 4,
    mode: str = "expanding",
    metric: str = "sharpe",
    train_bars: int = 0,
    test_bars: int = 0,
) -> dict[str, Any]:
    """Choose on each training window, report on the next test window, stitch the chosen test windows (module
    doc). Returns `folds` (FOLD_COLUMNS: windows as bar indices, the chosen grid point, its scores), `train`
    and `test` (the sweep of every point on every window, with a `fold` column), `stitched` (ts_ms, equity,
    fold: the chosen points' test windows chained from `base.capital`), `stitched_metrics`, `metric`, `mode`."""
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric: {metric!r} must be one of {METRIC_NAMES}")
    windows = walk_forward_windows(len(panel.ts_ms), folds, mode, train_bars, test_bars)
    rows, trains, tests, curves = [], [], [], []
    totals = {"traded_notional": 0.0, "entries": 0, "held_pair_bars": 0}
    capital = base.capital
    for k, (a, b, c, d) in enumerate(windows):
        train = sweep(panel.slice(a, b), _closing(pairs, a, b), base, axes)
        test = sweep(panel.slice(c, d), _closing(pairs, c, d), base, axes)
        scores = train[metric].to_numpy(dtype=float)
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0  # none finite: the first point
        point = {f: np.array([train.loc[best, f]], dtype=float) for f in GRID_FIELDS}
        sim = simulate(panel.slice(c, d), _closing(pairs, c, d), point, base, detail=False)
        growth = sim["equity"][0] / base.capital  # the engine scales with capital: chain the returns
        curves.append(pd.DataFrame({"ts_ms": panel.ts_ms[c:d], "equity": capital * growth, "fold": k}))
        totals["traded_notional"] += float(sim["traded_notional"][0]) * capital / base.capital
        totals["entries"] += int(sim["entries"][0])
        totals["held_pair_bars"] += int(sim["held_pair_bars"][0])
        in_market = sim["in_market"][0]
        curves[-1]["in_market"] = in_market
        capital = float(capital * growth[-1])
        rows.append((k, a, b, c, d, best, float(scores[best]), float(test.loc[best, metric])))
        trains.append(train.assign(fold=k))
        tests.append(test.assign(fold=k))
    stitched = pd.concat(curves, ignore_index=True)
    perf = performance(
        stitched["equity"].to_numpy()[None],
        panel.bar_h,
        stitched["in_market"].to_numpy()[None],
        np.array([totals["traded_notional"]]),
        np.array([totals["entries"]]),
        np.array([totals["held_pair_bars"]]),
    )
    return {
        "folds": pd.DataFrame(rows, columns=FOLD_COLUMNS),
        "train": pd.concat(trains, ignore_index=True),
        "test": pd.concat(tests, ignore_index=True),
        "stitched": stitched.drop(columns="in_market"),
        "stitched_metrics": {name: float(v[0]) for name, v in perf.items()},
        "metric": metric,
        "mode": mode,
    }


def sweep_table(full: pd.DataFrame, wf: dict[str, Any], ts_ms: np.ndarray) -> pd.DataFrame:
    """The rows `backtest_sweep` stores: the grid on the whole window (part `full`, fold -1), on every training
    and test window (`train` / `test`, their fold; `chosen` marks the point each fold chose), and the stitched
    out-of-sample result (`stitched`, point -1, no grid values), each with the window it covers."""
    stamps = pd.to_datetime(np.asarray(ts_ms, dtype=np.int64), unit="ms")
    parts = [full.assign(part="full", fold=-1, chosen=False, window_start=stamps[0], window_end=stamps[-1])]
    folds = wf["folds"].set_index("fold")
    for part, (lo, hi) in (("train", ("train_start", "train_end")), ("test", ("test_start", "test_end"))):
        table = wf[part].copy()
        table["part"] = part
        table["chosen"] = table["point"].to_numpy() == folds.loc[table["fold"], "chosen"].to_numpy()
        table["window_start"] = stamps[folds.loc[table["fold"], lo].to_numpy()]
        table["window_end"] = stamps[folds.loc[table["fold"], hi].to_numpy() - 1]
        parts.append(table)
    curve = wf["stitched"]
    stitched = {"part": "stitched", "fold": -1, "point": -1, "chosen": False, **wf["stitched_metrics"]}
    stitched.update(final_equity=float(curve["equity"].iloc[-1]), window_start=stamps[folds["test_start"].iloc[0]],
                    window_end=stamps[-1])  # fmt: skip
    parts.append(pd.DataFrame([stitched]))
    return pd.concat(parts, ignore_index=True)
