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
class LegBooks:
    """Many captured books of a leg, one per row (levels best first, NaN past the depth): what `capacities`
    walks, every row at its own notional at once."""

    bid_price: np.ndarray  # (N, L)
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray

    @classmethod
    def of(cls, book: LegBook) -> LegBooks:
        return cls(*(np.asarray(a, dtype=float)[None, :] for a in
                     (book.bid_price, book.bid_size, book.ask_price, book.ask_size)))  # fmt: skip

    def rows(self, idx: np.ndarray) -> LegBooks:
        return LegBooks(self.bid_price[idx], self.bid_size[idx], self.ask_price[idx], self.ask_size[idx])

    def depth_usd(self) -> np.ndarray:
        """Per book, `LegBook.depth_usd`."""
        bids = np.nansum(self.bid_price * self.bid_size, axis=1)
        asks = np.nansum(self.ask_price * self.ask_size, axis=1)
        return np.minimum(bids, asks)

    def walk_bps(self, notional: np.ndarray) -> np.ndarray:
        """Per book, `LegBook.walk_bps` at its own notional."""
        mid = (self.bid_price[:, 0] + self.ask_price[:, 0]) / 2
        buy = walk_cost_bps(self.ask_price, self.ask_size, mid, notional, "buy")
        sell = walk_cost_bps(self.bid_price, self.bid_size, mid, notional, "sell")
        return buy + sell


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
    notional, cost, capped = capacities([LegBooks.of(b) for b in books], np.array([fees_bps]), np.array([budget_bps]))
    return Capacity(float(notional[0]), float(cost[0]), bool(capped[0]))


def capacities(
    legs: Sequence[LegBooks], fees_bps: np.ndarray, budget_bps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`capacity` for N trades at once (row i: every leg's book i, its fees and its budget), by the same
    bisection on every row together: the notional per leg, the round trip's cost at it (NaN at 0) and capped,
    each `(N,)`."""
    fees_bps, budget_bps = np.asarray(fees_bps, dtype=float), np.asarray(budget_bps, dtype=float)
    limit = np.min([leg.depth_usd() for leg in legs], axis=0)
    notional, cost = np.zeros(len(limit)), np.full(len(limit), math.nan)
    capped = np.zeros(len(limit), dtype=bool)
    live = np.flatnonzero((budget_bps > 0) & (limit > 0))

    def cost_at(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        return fees_bps[rows] + sum(leg.rows(rows).walk_bps(q) for leg in legs)

    at_limit = cost_at(live, limit[live])
    whole = at_limit <= budget_bps[live]
    notional[live[whole]], cost[live[whole]], capped[live[whole]] = limit[live[whole]], at_limit[whole], True
    live = live[~whole]
    smallest = limit[live] * 2.0**-BISECTION_STEPS
    fits = cost_at(live, smallest) <= budget_bps[live]  # else not even the smallest size: 0
    live, lo, hi = live[fits], smallest[fits], limit[live[fits]]  # cost(lo) within the budget, cost(hi) beyond
    fees, budget, walked = fees_bps[live], budget_bps[live], [leg.rows(live) for leg in legs]
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        within = fees + sum(leg.walk_bps(mid) for leg in walked) <= budget
        lo, hi = np.where(within, mid, lo), np.where(within, hi, mid)
    notional[live] = lo
    cost[live] = cost_at(live, lo)
    return notional, cost, capped


def carry_bps(carry_apr: float, horizon_h: int) -> float:
    """The carry earned over the horizon, in bps of the notional."""
    return carry_apr * horizon_h / HOURS_PER_YEAR * 1e4
