"""Parameter sweeps (the whole grid in one vectorized pass, chunked to bound memory) and walk-forward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .engine import GRID_FIELDS, BacktestParams, grid_metrics, make_grid, prepare_legs, simulate
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


def walk_forward(
    panel: Panel,
    pairs: PairSet,
    base: BacktestParams,
    axes: dict[str, list[float]],
    train_fraction: float = 0.6,
    metric: str = "sharpe",
) -> dict[str, Any]:
    """Choose the grid point with the best `metric` on the first `train_fraction` of the bars, then report the
    whole grid and the chosen point on the rest (a fresh start with the same capital: no information from the
    test part reaches the choice)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction: {train_fraction!r} must be in (0, 1)")
    T = len(panel.ts_ms)
    split = int(round(T * train_fraction))
    if split < 2 or T - split < 2:
        raise ValueError(f"train_fraction: {train_fraction!r} leaves too few bars on one side of {T}")
    train_pairs = replace(pairs, signal=pairs.signal[:split])
    test_pairs = replace(pairs, signal=pairs.signal[split:])
    train = sweep(panel.slice(0, split), train_pairs, base, axes)
    test = sweep(panel.slice(split, T), test_pairs, base, axes)
    scores = train[metric].to_numpy(dtype=float)
    if not np.isfinite(scores).any():
        raise ValueError(f"metric: {metric!r} is not finite for any grid point on the training part")
    best = int(np.nanargmax(scores))
    chosen = {f: float(train.loc[best, f]) for f in GRID_FIELDS}
    return {
        "split_ts_ms": int(panel.ts_ms[split]),
        "metric": metric,
        "chosen": chosen,
        "train": train,
        "test": test,
        "train_score": float(scores[best]),
        "test_score": float(test.loc[best, metric]),
    }
