"""Pluggable strategies. A strategy turns a Panel into a PairSet: which two legs each candidate trade has
and its signal (expected carry edge, APR, known at each bar). The engine does the rest (hysteresis,
holding limits, sizing, accounting), identically for every strategy.

Adding one: create `strategies/<name>.py` with a class decorated by `@register` (from `base.py`) that has a
`name`, a docstring, and `pairs(self, panel, options) -> PairSet`; import it here (registration is the
import's side effect). Signal convention: `signal > 0` means "short leg A, long leg B" is expected to earn
`signal` per year; `signal < 0` the reverse (only where `allow_reverse` is set for the pair).
"""

from __future__ import annotations

from . import cash_carry, perp_perp  # noqa: F401  (registration side effect)
from .base import STRATEGIES, PairSet, Strategy, get_strategy, register

__all__ = ["STRATEGIES", "PairSet", "Strategy", "get_strategy", "register"]
