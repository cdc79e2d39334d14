"""How much a carry trade can hold before costs eat the carry: round-trip costs from walking captured books.

A trade has legs (a spot and a perp, or two perps), each entered and exited once, with the same notional Q
per leg (quote currency). Each leg is walked once on each side of its book (entry and exit: one buy and one
sell, whichever the trade's direction), so in bps of Q:

    round_trip_bps(Q) = sum over legs of (buy_walk_bps(Q) + sell_walk_bps(Q) + 2 x taker_fee_bps)

where a walk's cost is its VWAP against the mid (`book_depth.walk_cost_bps`, half the spread included). For
a size the top levels hold this is the flat model's `2 x (fees + half-spreads)`; beyond it it grows with Q.

The capacity is the largest Q with `round_trip_bps(Q) <= share x carry_bps`, where `carry_bps` is the
carry expected over the horizon, `(expected_carry_apr - borrow_apr) x H / 8760 x 1e4`: a desk's "how much
before costs eat more than `share` of the carry". `round_trip_bps` never falls as Q grows, so the answer is
found by bisection, up to the depth the captured levels hold (a capacity at that limit is a lower bound:
`capped`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .book_depth import walk_cost_bps
from .units import HOURS_PER_YEAR

BISECTION_STEPS = 60  # halvings of the depth: far below a cent on any book


@dataclass(frozen=True)
class LegBook:
    """One captured book of a leg: levels best first, sizes in base units (NaN past the depth)."""

    bid_price: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray

    @property
    def mid(self) -> float:
        return float((self.bid_price[0] + self.ask_price[0]) / 2)

    def depth_usd(self) -> float:
        """The notional the captured levels hold on the thinner side (what a round trip can walk)."""
        bids = np.nansum(self.bid_price * self.bid_size)
        asks = np.nansum(self.ask_price * self.ask_size)
        return float(min(bids, asks))

    def walk_bps(self, notional: float) -> float:
        """Buying then selling `notional`: the two walks' costs in bps of the mid (NaN beyond the depth)."""
        mid = np.array([self.mid])
        buy = walk_cost_bps(self.ask_price[None, :], self.ask_size[None, :], mid, notional, "buy")[0]
        sell = walk_cost_bps(self.bid_price[None, :], self.bid_size[None, :], mid, notional, "sell")[0]
        return float(buy + sell)


@dataclass(frozen=True)
class Capacity:
    notional_usd: float  # the largest notional per leg within the budget (0: not even the smallest size)
    cost_bps: float  # the round trip's cost at it (NaN at 0)
    capped: bool  # the captured depth ran out before the budget did: a lower bound


def round_trip_bps(books: Sequence[LegBook], fees_bps: float, notional: float) -> float:
    """The round trip's cost in bps of the per-leg notional: both walks of every leg plus `fees_bps` (the
    taker fees of every leg's entry and exit together)."""
    return fees_bps + sum(book.walk_bps(notional) for book in books)


def capacity(books: Sequence[LegBook], fees_bps: float, budget_bps: float) -> Capacity:
    """The largest per-leg notional whose round-trip cost stays within `budget_bps` (see the module doc)."""
    limit = min(book.depth_usd() for book in books)
    if not (budget_bps > 0 and limit > 0):
        return Capacity(0.0, math.nan, False)
    at_limit = round_trip_bps(books, fees_bps, limit)
    if at_limit <= budget_bps:
        return Capacity(limit, at_limit, True)
    smallest = limit * 2.0**-BISECTION_STEPS
    if not round_trip_bps(books, fees_bps, smallest) <= budget_bps:
        return Capacity(0.0, math.nan, False)
    lo, hi = smallest, limit  # cost(lo) within the budget, cost(hi) beyond it
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        if round_trip_bps(books, fees_bps, mid) <= budget_bps:
            lo = mid
        else:
            hi = mid
    return Capacity(lo, round_trip_bps(books, fees_bps, lo), False)


def carry_bps(carry_apr: float, horizon_h: int) -> float:
    """The carry earned over the horizon, in bps of the notional."""
    return carry_apr * horizon_h / HOURS_PER_YEAR * 1e4
