"""Keyed randomness and small caches: every draw of the simulated world is a function of integer keys."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import numpy as np

_M64 = (1 << 64) - 1


def keyed_rng(*keys: int) -> np.random.Generator:
    """A generator seeded by integer keys (seed, venue, asset, kind, hour...): the same keys, the same draws."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) & _M64 for k in keys])))


def keyed_unit(*keys: int) -> float:
    """A uniform in [0, 1) from a splitmix64 hash of integer keys (cheap per-message draws)."""
    x = 0x9E3779B97F4A7C15
    for key in keys:
        x = (x + (int(key) & _M64) + 0x9E3779B97F4A7C15) & _M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def iso(ms: int) -> str:
    """ccxt's ISO-8601 string of epoch milliseconds."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class LRU(OrderedDict):
    """A bounded cache: `put` evicts the oldest entry past `size`, `hit` refreshes an entry it finds."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value
