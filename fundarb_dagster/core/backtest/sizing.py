"""Sizing by capacity: each pair's notional per leg capped at what its captured books carry when it is sized.

Rule 3 (engine.py) gives every pair an even share of the capital: notional per leg = capital / P / (spot legs +
perp legs / leverage). Under `sizing: capacity` (`BacktestParams.sizing`) the notional a pair is sized at, at
an episode's start and at each rebalance (bar s), is

    min(even notional, capacity at s)

where the capacity is core/capacity.py's rule, the one `opportunities` ranks with: the largest notional per leg
whose round trip (both legs' book walks, each on the last book captured at most `max_age_ms` before s, plus
both legs' entry and exit fees at the rate the run charges) costs at most `share` of the carry expected over
`horizon_h` hours, the carry being the pair's signal at s (net of the borrow rate on a reverse carry). Where a
leg has no fresh book the even notional stays. A capacity of 0 (fees alone above the budget, or a book too
thin for any size) keeps the pair flat for that segment.

`size_source` per position says which bound sized it: `capacity` (the books), `capital` (the even share: the
books carried more) or `even` (no book: the even split, as under `sizing: even`). The capital a capped pair
leaves unused is its share less the margin its notional needs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..capacity import LegBooks, capacities, carry_bps
from ..config import BACKTEST_SIZINGS
from ..units import HOUR_MS
from .panel import Panel
from .strategies import PairSet

SIZINGS = BACKTEST_SIZINGS  # the `backtest.sizing` choices of the source config
SIZE_SOURCES = ("even", "capital", "capacity")  # codes 0, 1, 2 of the engine's `size_src`


def market_books(books: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, LegBooks]]:
    """Captured books (`BOOK_COLUMNS` rows, levels as lists) per (exchange, symbol): times (ms, ascending) and
    the books as level arrays, one row per book."""
    out = {}
    if books.empty:
        return out
    for key, rows in books.groupby(["exchange", "symbol"]):
        rows = rows.sort_values("ts_ms")
        levels = [_levels(rows[name]) for name in ("bid_price", "bid_size", "ask_price", "ask_size")]
        out[key] = (rows["ts_ms"].to_numpy(dtype=np.int64), LegBooks(*levels))
    return out


def _levels(values: pd.Series) -> np.ndarray:
    width = max((len(v) for v in values), default=0)
    out = np.full((len(values), width), np.nan)
    for k, level in enumerate(values):
        out[k, : len(level)] = np.asarray(level, dtype=float)
    return out


def last_fresh(times: np.ndarray, ts_ms: np.ndarray, max_age_ms: int) -> np.ndarray:
    """Per bar, the index of the last book at or before it and at most `max_age_ms` old (-1: none)."""
    k = np.searchsorted(times, ts_ms, side="right") - 1
    fresh = (k >= 0) & (ts_ms - times[np.clip(k, 0, None)] <= max_age_ms)
    return np.where(fresh, k, -1)


def leg_fees(panel: Panel, market: int, execution: str) -> np.ndarray:
    """`(T,)` the fee (fraction) the run charges a trade of the market at each bar: dated where it has them."""
    dated = panel.taker_fee_t if execution == "taker" else panel.maker_fee_t
    if dated is not None:
        return dated[:, market]
    m = panel.markets[market]
    return np.full(panel.shape[0], m.taker_fee if execution == "taker" else m.maker_fee)


def capacity_caps(
    panel: Panel,
    pairs: PairSet,
    books: pd.DataFrame,
    execution: str,
    share: float,
    horizon_h: float,
    max_age_ms: int = HOUR_MS,
) -> np.ndarray:
    """`(T, P)` each pair's capacity per leg at each bar (module doc; NaN where a leg has no fresh book or the
    pair no signal)."""
    T, P = pairs.signal.shape
    caps = np.full((T, P), np.nan)
    by_market = market_books(books)
    if not by_market:
        return caps
    borrow = np.broadcast_to(pairs.borrow_apr, (T, P))
    for p, (a, b) in enumerate(zip(pairs.leg_a.tolist(), pairs.leg_b.tolist(), strict=True)):
        found = [by_market.get((panel.markets[i].exchange, panel.markets[i].symbol)) for i in (a, b)]
        if any(f is None for f in found):
            continue
        ka, kb = (last_fresh(times, panel.ts_ms, max_age_ms) for times, _ in found)  # type: ignore[misc]
        signal = pairs.signal[:, p]
        rows = np.flatnonzero((ka >= 0) & (kb >= 0) & np.isfinite(signal))
        if not len(rows):
            continue
        # the carry of the side the signal points to: a reverse (signal < 0) pays the borrow on its short spot
        carry = np.abs(signal[rows]) - np.where(signal[rows] < 0, borrow[rows, p], 0.0)
        fees_bps = 2 * (leg_fees(panel, a, execution)[rows] + leg_fees(panel, b, execution)[rows]) * 1e4
        legs = [found[0][1].rows(ka[rows]), found[1][1].rows(kb[rows])]  # type: ignore[index]
        caps[rows, p], _, _ = capacities(legs, fees_bps, share * carry_bps(carry, horizon_h))
    return caps
