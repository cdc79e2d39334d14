"""The simulated L2 order book: the one book behind every quote, trade and fill of a simulated market.

The best level of each side is the market data's quote at that second (`Chunk.bid/ask`, `bid_size/ask_size`:
what `watch_ticker` sends and where trades print), so the book, the tickers and the trades agree. Behind it,
`MAX_LEVELS - 1` more levels per side:

- level k (k >= 1) sits `round(mid x step x k^1.3 x (1 + 0.3 u))` ticks beyond the best (at least one tick
  beyond level k - 1), where `step` is the market's half-spread (at least a tick): gaps widen with distance;
- its size is `depth x exp(-k / 25) x lognormal(0, 0.5)`, rounded to the lot, where `depth` is six times the
  typical top-of-book size: the book thins with distance from the mid (level 49 holds ~14 % of level 1);
- a perp in a hot premium regime quotes twice the spread (`world.HOT_SPREAD`, in the quotes themselves), its
  levels twice as far apart and half as deep (`world.HOT_DEPTH`).

Deterministic: a second's levels come from a generator keyed by (seed, market, absolute second), so any
book is the same whenever and in whatever order it is asked for. The book changes once a second (ccxt's
`nonce` is the absolute second); amounts are in the market's amount unit (contracts on okx swaps).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from ...units import HOUR_MS, SECOND_MS
from .draws import LRU, iso, keyed_rng
from .market_data import MarketData
from .markets import Market
from .venues import ASSETS
from .world import HOT_DEPTH, HOT_SPREAD

MAX_LEVELS: Final = 50  # levels per side the venue serves
DEPTH_MULT: Final = 6.0  # a deep level's size, x the typical top-of-book size
DECAY_LEVELS: Final = 25.0  # sizes fall by e every this many levels
GAP_POWER: Final = 1.3  # level k sits ~ step x k^1.3 beyond the best
BOOK_KEY: Final = 7  # the random-stream kind of book depth (world: 1-4, market data: 5, faults: 6)


class SimBook:
    """L2 books of the simulated markets (see the module doc); reads the quotes from `MarketData`."""

    def __init__(self, data: MarketData, seed: int) -> None:
        self.data = data
        self.seed = seed
        self._cache = LRU(256)

    def levels(self, m: Market, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) at market time t: arrays of `MAX_LEVELS` [price, amount] rows, best first."""
        second = t // SECOND_MS
        key = (m.symbol, second)
        cached = self._cache.hit(key)
        if cached is not None:
            return cached
        h = t // HOUR_MS
        chunk = self.data.chunk(m, h)
        s = (t - chunk.start_ms) // SECOND_MS
        mid = float(chunk.mid[s])
        hot = m.swap and self.data.world.hot(m.venue.index, m.a, h)
        step = max(m.tick, mid * m.half_spread * (HOT_SPREAD if hot else 1.0))
        unit_value = mid * m.contract_size
        depth = ASSETS[m.asset].notional * 4 / unit_value * DEPTH_MULT * (HOT_DEPTH if hot else 1.0)
        gen = keyed_rng(self.seed, BOOK_KEY, m.key, second)
        k = np.arange(1, MAX_LEVELS, dtype=np.float64)
        sides = []
        for best, best_size, sign in ((chunk.bid[s], chunk.bid_size[s], -1.0), (chunk.ask[s], chunk.ask_size[s], 1.0)):
            gaps = np.maximum(1.0, np.round(step * k**GAP_POWER * (1.0 + 0.3 * gen.random(k.size)) / m.tick))
            ticks = np.maximum.accumulate(gaps - k) + k  # ticks_k = max(ticks_{k-1} + 1, gaps_k)
            prices = np.round(float(best) + sign * ticks * m.tick, m.decimals)
            sizes = depth * np.exp(-k / DECAY_LEVELS) * gen.lognormal(0.0, 0.5, k.size)
            sizes = np.maximum(m.lot, np.round(sizes, m.lot_decimals))
            rows = np.empty((MAX_LEVELS, 2))
            rows[0] = (float(best), float(best_size))
            rows[1:, 0], rows[1:, 1] = prices, sizes
            if sign < 0:
                rows = rows[rows[:, 0] > 0]  # a bid never reaches zero
            sides.append(rows)
        return self._cache.put(key, (sides[0], sides[1]))

    def structure(self, m: Market, t: int, limit: int | None = None) -> dict[str, Any]:
        """ccxt's order-book structure at t, the top `limit` levels per side (all `MAX_LEVELS` by default)."""
        bids, asks = self.levels(m, t)
        n = MAX_LEVELS if limit is None else int(limit)
        stamp = t // SECOND_MS * SECOND_MS
        return {
            "symbol": m.symbol,
            "bids": bids[:n].tolist(),
            "asks": asks[:n].tolist(),
            "timestamp": stamp,
            "datetime": iso(stamp),
            "nonce": t // SECOND_MS,
        }

    # -- scans over a time range (for resting orders and marks) ---------------------------------------------
    def first_cross(self, m: Market, side: str, price: float, lo: int, hi: int) -> int | None:
        """The first second start in (lo, hi] at which the opposite best reaches a resting `side` order's price
        (a buy: ask <= price; a sell: bid >= price), None if the market does not come to it."""
        first = lo // SECOND_MS + 1
        last = hi // SECOND_MS
        while first <= last:
            h = first * SECOND_MS // HOUR_MS
            chunk = self.data.chunk(m, h)
            s0 = first - chunk.start_ms // SECOND_MS
            s1 = min(3599, last - chunk.start_ms // SECOND_MS)
            quotes = chunk.ask[s0 : s1 + 1] if side == "buy" else chunk.bid[s0 : s1 + 1]
            hits = np.flatnonzero(quotes <= price if side == "buy" else quotes >= price)
            if hits.size:
                return chunk.start_ms + (s0 + int(hits[0])) * SECOND_MS
            first = (h + 1) * HOUR_MS // SECOND_MS
        return None

    def marks(self, m: Market, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(second start times, mark prices) of the seconds starting in (lo, hi]."""
        first = lo // SECOND_MS + 1
        last = hi // SECOND_MS
        times: list[np.ndarray] = []
        marks: list[np.ndarray] = []
        while first <= last:
            h = first * SECOND_MS // HOUR_MS
            chunk = self.data.chunk(m, h)
            s0 = first - chunk.start_ms // SECOND_MS
            s1 = min(3599, last - chunk.start_ms // SECOND_MS)
            times.append(chunk.start_ms + np.arange(s0, s1 + 1, dtype=np.int64) * SECOND_MS)
            marks.append(np.asarray(chunk.mark[s0 : s1 + 1], dtype=np.float64))
            first = (h + 1) * HOUR_MS // SECOND_MS
        if not times:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(times), np.concatenate(marks)
