"""The simulated world: one log-price path per asset shared by every venue, and a perp premium per venue.

Hourly anchors: a slowly mean-reverting log-price walk per asset with shocks partly common to all assets,
and a mean-reverting (8 h) premium per (venue, asset) around a small positive bias, with regimes (in each
3-day block a (venue, asset) runs hot with probability 6 %; every funding-interval change a venue made
comes with the hot regime that caused it). Inside an hour: a Brownian bridge at one-second resolution.

Deterministic by `(seed, start)`: anchors are generated from an origin `HISTORY_DAYS` before
floor_day(start) in fixed `EPOCH_HOURS` blocks, and each hour's per-second path comes from its own generator
keyed by (seed, venue, asset, kind, absolute hour), so any range is the same in any order and any process.
"""

from __future__ import annotations

import math

import numpy as np

from ...units import DAY_MS, HOUR_MS, HOURS_PER_YEAR
from .draws import LRU, keyed_rng
from .venues import ASSET_INDEX, ASSET_NAMES, ASSETS, VENUE_LIST

EPOCH_HOURS = 720  # hourly anchors are generated in fixed blocks of this many hours from the origin
HISTORY_DAYS = 120  # the world starts this many days before floor_day(sim.start)
REGIME_BLOCK_H = 72
HOT_PROBABILITY = 0.06
HOT_SPREAD = 2.0  # a perp's quoted spread in a hot regime, x its calm spread
HOT_DEPTH = 0.5  # its book depth in a hot regime, x its calm depth

_KAPPA = 1.0 / (24 * 90)  # log-price pull back to the starting price: ~90-day half-life-ish, keeps levels sane
_RHO = 0.7  # loading of every asset on the common market shock
_PREM_DECAY = math.exp(-1.0 / 8.0)  # premium mean reversion per hour (8-hour time constant)
_PREM_SD = 0.00025  # stationary premium sd (2.5 bp)
_PREM_NOISE = 0.00003  # per-second premium noise (impact-price jitter)


class World:
    """Hourly anchors from the origin in fixed epochs; per-second paths per hour from keyed generators."""

    def __init__(self, seed: int, start_ms: int) -> None:
        self.seed = seed
        self.origin_h = (start_ms // DAY_MS * DAY_MS - HISTORY_DAYS * DAY_MS) // HOUR_MS
        self.origin_ms = self.origin_h * HOUR_MS
        n_a, n_v = len(ASSET_NAMES), len(VENUE_LIST)
        self.log_p0 = np.log(np.array([ASSETS[a].price for a in ASSET_NAMES]))
        self.sig_h = np.array([ASSETS[a].vol for a in ASSET_NAMES]) / math.sqrt(HOURS_PER_YEAR)
        bias_rng = keyed_rng(seed, 11)
        self.bias = bias_rng.uniform(0.00003, 0.00012, (n_v, n_a))
        self.forced: list[tuple[int, int, int, int, float]] = []  # venue, asset, from_h, to_h, premium
        self.changes: dict[tuple[int, int], list[tuple[int, float]]] = {}
        day0 = start_ms // DAY_MS * DAY_MS
        for venue in VENUE_LIST:
            for change in venue.interval_changes:
                at = day0 - change.days_before_start * DAY_MS
                a = ASSET_INDEX[change.asset]
                self.changes.setdefault((venue.index, a), []).append((at, float(change.interval_h)))
                self.forced.append((venue.index, a, at // HOUR_MS - 72, at // HOUR_MS + 120, change.regime_premium))
        self.x = np.empty((1 + EPOCH_HOURS * 8, n_a))
        self.q = np.empty((1 + EPOCH_HOURS * 8, n_v, n_a))
        self.sd = np.empty((EPOCH_HOURS * 8, n_v, n_a))
        self.x[0] = self.log_p0
        self.q[0] = self.bias
        self.n = 0  # hours generated
        self.spot_cache = LRU(512)
        self.prem_cache = LRU(512)
        self.minutes_cache = LRU(100_000)

    def _grow(self) -> None:
        epoch = self.n // EPOCH_HOURS
        n = EPOCH_HOURS
        if self.n + n + 1 > self.x.shape[0]:
            size = self.x.shape[0] * 2
            self.x = np.resize(self.x, (size, *self.x.shape[1:]))
            self.q = np.resize(self.q, (size, *self.q.shape[1:]))
            self.sd = np.resize(self.sd, (size - 1, *self.sd.shape[1:]))
        rng = keyed_rng(self.seed, 1, epoch)
        n_a, n_v = len(ASSET_NAMES), len(VENUE_LIST)
        common = rng.standard_normal(n)
        own = rng.standard_normal((n, n_a))
        eps = rng.standard_normal((n, n_v, n_a))
        h0 = self.origin_h + self.n
        mean, sd = self._regimes(h0, n)
        x = self.x[self.n].copy()
        q = self.q[self.n].copy()
        shock = self.sig_h * (_RHO * common[:, None] + math.sqrt(1 - _RHO**2) * own)
        for i in range(n):
            x = x + _KAPPA * (self.log_p0 - x) + shock[i]
            q = mean[i] + (q - mean[i]) * _PREM_DECAY + sd[i] * eps[i]
            self.x[self.n + 1 + i] = x
            self.q[self.n + 1 + i] = q
        self.sd[self.n : self.n + n] = sd
        self.n += n

    def _regimes(self, h0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Premium mean and innovation sd per hour: the venue bias, hot regimes per 3-day block, forced ones."""
        n_a, n_v = len(ASSET_NAMES), len(VENUE_LIST)
        hours = np.arange(h0, h0 + n)
        blocks = hours // REGIME_BLOCK_H
        mean = np.empty((n, n_v, n_a))
        hot = np.zeros((n, n_v, n_a), dtype=bool)
        for block in np.unique(blocks):
            rng = keyed_rng(self.seed, 2, int(block))
            u = rng.random((n_v, n_a))
            level = rng.uniform(0.0005, 0.0035, (n_v, n_a)) * np.where(rng.random((n_v, n_a)) < 0.85, 1.0, -1.0)
            is_hot = u < HOT_PROBABILITY
            rows = blocks == block
            mean[rows] = self.bias + np.where(is_hot, level, 0.0)
            hot[rows] = is_hot
        for v, a, from_h, to_h, level in self.forced:
            rows = (hours >= from_h) & (hours < to_h)
            mean[rows, v, a] = level
            hot[rows, v, a] = True
        base = _PREM_SD * math.sqrt(1 - _PREM_DECAY**2)
        return mean, np.where(hot, base * 2.5, base)

    def _ensure(self, i: int) -> None:
        if i < 0:
            raise ValueError(f"time: hour index {i} lies before the sim's origin")
        while self.n < i + 1:
            self._grow()

    def spot_seconds(self, a: int, h: int) -> np.ndarray:
        """Log index price of asset `a` at each second of absolute hour `h` (a Brownian bridge between anchors)."""
        key = (a, h)
        cached = self.spot_cache.hit(key)
        if cached is not None:
            return cached
        i = h - self.origin_h
        self._ensure(i)
        x0, x1 = self.x[i, a], self.x[i + 1, a]
        steps = keyed_rng(self.seed, 3, a, h).standard_normal(3600) * (self.sig_h[a] / 60.0)
        walk = np.cumsum(steps)
        t = np.arange(3600) / 3600.0
        path = x0 + t * (x1 - x0) + np.concatenate(([0.0], walk[:-1])) - t * walk[-1]
        return self.spot_cache.put(key, path)

    def premium_seconds(self, v: int, a: int, h: int) -> np.ndarray:
        """The perp premium (fraction) of venue `v`, asset `a` at each second of hour `h`."""
        key = (v, a, h)
        cached = self.prem_cache.hit(key)
        if cached is not None:
            return cached
        i = h - self.origin_h
        self._ensure(i)
        q0, q1 = self.q[i, v, a], self.q[i + 1, v, a]
        rng = keyed_rng(self.seed, 4, v, a, h)
        walk = np.cumsum(rng.standard_normal(3600) * (self.sd[i, v, a] / 60.0))
        t = np.arange(3600) / 3600.0
        path = q0 + t * (q1 - q0) + np.concatenate(([0.0], walk[:-1])) - t * walk[-1]
        path = path + rng.standard_normal(3600) * _PREM_NOISE
        return self.prem_cache.put(key, path)

    def premium_minutes(self, v: int, a: int, h: int) -> np.ndarray:
        key = (v, a, h)
        cached = self.minutes_cache.hit(key)
        if cached is not None:
            return cached
        return self.minutes_cache.put(key, self.premium_seconds(v, a, h)[::60].copy())

    def hot(self, v: int, a: int, h: int) -> bool:
        """Whether venue `v`'s perp on asset `a` runs a hot premium regime in hour `h` (its books widen)."""
        i = h - self.origin_h
        self._ensure(i)
        return bool(self.sd[i, v, a] > _PREM_SD * math.sqrt(1 - _PREM_DECAY**2) * 1.5)

    def interval_spans(self, v: int, a: int) -> list[tuple[int | None, float]]:
        """[(valid_from_ms or None, interval_h)]: settlements T > valid_from use interval_h."""
        spans: list[tuple[int | None, float]] = [(None, VENUE_LIST[v].funding_interval_h)]
        spans += sorted(self.changes.get((v, a), []))
        return spans


_WORLDS: dict[tuple[int, int], World] = {}


def shared_world(seed: int, start_ms: int) -> World:
    """The world of (seed, start), built once per process and shared by every exchange object."""
    key = (seed, start_ms)
    if key not in _WORLDS:
        _WORLDS[key] = World(seed, start_ms)
    return _WORLDS[key]


class LazyWorld:
    """The world of (seed, start), fetched at its first use: exchange constructors stay cheap and start nothing."""

    def __init__(self, seed: int, start_ms: int) -> None:
        self.seed = seed
        self.start_ms = start_ms
        self.built: World | None = None

    def get(self) -> World:
        if self.built is None:
            self.built = shared_world(self.seed, self.start_ms)
        return self.built
