"""Slippage from captured books: each bar's trade of a market walks the last book captured before it.

The engine charges a trade `|traded| x mid x half_spread` (rule 4). Where a market has a captured book at most
`max_age_ms` old at a bar's time (`ts_ms[t]`, when the bar's trades happen), its half-spread there becomes the
book-walk cost of the leg's size: `(buy_walk_bps(Q) + sell_walk_bps(Q)) / 2 / 1e4`, each walk's VWAP against
the book's mid (`book_depth.walk_cost_bps`, half the spread included). Averaging the two sides is exact for a
round trip walked on one book (one buy and one sell), and for a symmetric book for each trade alone. Elsewhere
(no book, too old, or too thin for Q) the panel's own half-spread stays: the quoted one, else the bps model.

Q is the notional a leg trades when it enters or exits: the run's per-pair notional (`leg_notionals`: capital
split over the pairs, over spot legs + perp legs / leverage, as rule 3 sizes it). A rebalance trades less
than Q and is charged as if it traded Q (a conservative bound); a fixed-units run (`units > 0`) is not walked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from ..units import HOUR_MS
from .engine import BacktestParams
from .panel import Panel
from .sizing import last_fresh, market_books
from .strategies import PairSet

BOOK_COLUMNS = ["exchange", "symbol", "ts_ms", "bid_price", "bid_size", "ask_price", "ask_size"]


def leg_notionals(panel: Panel, pairs: PairSet, params: BacktestParams) -> dict[int, float]:
    """The notional each market's leg enters with (market index -> quote): rule 3's per-pair notional; a market
    in several pairs takes the largest. Empty for a fixed-units run."""
    if params.units > 0 or not pairs.names:
        return {}
    per_pair = params.capital / len(pairs.names)
    out: dict[int, float] = {}
    for a, b in zip(pairs.leg_a.tolist(), pairs.leg_b.tolist(), strict=True):
        cost = sum(1.0 / params.leverage if panel.markets[i].is_perp else 1.0 for i in (a, b))
        for i in (a, b):
            out[i] = max(out.get(i, 0.0), per_pair / cost)
    return out


def book_half_spreads(
    panel: Panel, books: pd.DataFrame, notionals: Mapping[int, float], max_age_ms: int = HOUR_MS
) -> np.ndarray:
    """`(T, M)` half-spreads (fractions) from walking the last book at or before each bar (NaN: not walked)."""
    out = np.full(panel.shape, np.nan)
    by_market = market_books(books)
    for j, notional in notionals.items():
        market = panel.markets[j]
        found = by_market.get((market.exchange, market.symbol))
        if found is None or not notional > 0:
            continue
        times, walked = found
        cost = walked.walk_bps(np.full(len(times), notional)) / 2 / 1e4
        k = last_fresh(times, panel.ts_ms, max_age_ms)  # the last book at or before the bar
        out[:, j] = np.where(k >= 0, cost[np.clip(k, 0, None)], np.nan)
    return out


def with_book_slippage(
    panel: Panel, books: pd.DataFrame, notionals: Mapping[int, float], max_age_ms: int = HOUR_MS
) -> tuple[Panel, dict[str, str]]:
    """The panel with walked half-spreads where a fresh book holds the leg's size, and per market how many bars
    were walked (`book 12/48 bars`; the rest on the flat model: quoted half-spread, else the bps model)."""
    walked = book_half_spreads(panel, books, notionals, max_age_ms)
    on_book = np.isfinite(walked)
    half_spread = np.where(on_book, walked, panel.half_spread)
    sources = {
        f"{m.exchange} {m.symbol}": f"book {int(on_book[:, j].sum())}/{len(panel.ts_ms)} bars"
        for j, m in enumerate(panel.markets)
    }
    return replace(panel, half_spread=half_spread), sources
