"""The two-phase risk check: the same limits and figures as `risk_report` (core/risk.py), asked twice.

Phase 1, at the decision: each pair whose target would grow the book is admitted only if the book with it
(and every pair admitted before it, strongest signal first) breaches no limit. Phase 2, just before each
order: the book as it will be when every order in flight and this one have filled; an order that grows
exposure is vetoed when that book breaches a limit (it is then reported as rejected, `risk:<limit>`, and the
state machine finishes or unwinds the pair). Orders that only reduce (exits, unwinds, trims) are never vetoed:
refusing them would keep the risk they remove.

The book is `core.risk`'s: one row per leg (pair, leg, exchange, symbol, underlying, kind, units signed,
entry_price, mark_price, wallet_usd, mmr, taker_fee). VaR/ES need the book's price history, which the trader
does not hold: they are left to `risk_report` (the trader's limits are the exposure, margin and drawdown ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from ..risk import Breach, RiskLimits, evaluate_limits

BOOK_COLUMNS = [
    "pair",
    "leg",
    "exchange",
    "symbol",
    "underlying",
    "kind",
    "units",
    "entry_price",
    "mark_price",
    "wallet_usd",
    "mmr",
    "taker_fee",
]
_NO_HISTORY: tuple[float, ...] = ()  # VaR/ES are risk_report's (see the module doc)


@dataclass(frozen=True)
class BookLeg:
    pair: str
    leg: str  # "a" or "b", as in backtest_book
    exchange: str
    symbol: str
    underlying: str
    kind: str  # "perp" or "spot"
    units: float  # signed base units
    entry_price: float
    mark_price: float
    wallet_usd: float  # isolated margin of a perp leg (0 for spot)
    mmr: float
    taker_fee: float

    def resized(self, units: float, leverage: float) -> BookLeg:
        """The leg holding `units`: an added part enters at the mark with margin notional / leverage."""
        if abs(units) <= abs(self.units) and units * self.units >= 0:  # shrinking keeps entry and margin share
            share = abs(units) / abs(self.units) if self.units else 0.0
            return replace(self, units=units, wallet_usd=self.wallet_usd * share)
        added = abs(units) - abs(self.units) if units * self.units > 0 else abs(units)
        base = self if units * self.units > 0 else replace(self, units=0.0, wallet_usd=0.0, entry_price=self.mark_price)
        entry = (abs(base.units) * base.entry_price + added * self.mark_price) / abs(units)
        margin = base.wallet_usd + (added * self.mark_price / leverage if self.kind == "perp" else 0.0)
        return replace(self, units=units, entry_price=entry, wallet_usd=margin)


def book_frame(legs: Iterable[BookLeg]) -> pd.DataFrame:
    rows = [[getattr(leg, c) for c in BOOK_COLUMNS] for leg in legs if leg.units != 0]
    frame = pd.DataFrame(rows, columns=BOOK_COLUMNS)
    for column in ("units", "entry_price", "mark_price", "wallet_usd", "mmr", "taker_fee"):
        frame[column] = frame[column].astype(float)
    return frame


def breaches(legs: Iterable[BookLeg], equity: float, drawdown: float, limits: RiskLimits) -> list[Breach]:
    """Every limit the book breaches (core.risk.evaluate_limits, without VaR/ES)."""
    frame = book_frame(legs)
    if frame.empty:  # a flat book: only the drawdown can be out of bounds
        frame = pd.DataFrame({c: pd.Series(dtype=float if c in BOOK_COLUMNS[6:] else object) for c in BOOK_COLUMNS})
    return evaluate_limits(frame, equity, drawdown, _NO_HISTORY, limits, subject="trader")[1]


def _key(leg: BookLeg) -> tuple[str, str]:
    return (leg.pair, leg.leg)


def with_units(
    book: Sequence[BookLeg],
    changes: Mapping[tuple[str, str], float],
    leverage: float,
    template: Mapping[tuple[str, str], BookLeg],
) -> list[BookLeg]:
    """The book with some legs' units replaced; a leg not in the book comes from `template` (flat, marked)."""
    out = {_key(leg): leg for leg in book}
    for key, units in changes.items():
        leg = out.get(key) or template[key]
        out[key] = leg.resized(units, leverage)
    return list(out.values())


def grows(current: float, new: float) -> bool:
    """The leg's exposure grows (a larger size, or any size on the other side)."""
    return abs(new) > abs(current) + 1e-12 or (new * current < 0)


@dataclass(frozen=True)
class Admission:
    admitted: dict[str, tuple[float, float]]  # pair -> target units (a, b)
    vetoed: dict[str, list[Breach]]  # pair -> the breaches its growth would cause


def admit(
    book: Sequence[BookLeg],
    targets: Sequence[tuple[str, tuple[float, float]]],
    template: Mapping[tuple[str, str], BookLeg],
    equity: float,
    drawdown: float,
    limits: RiskLimits,
    leverage: float,
) -> Admission:
    """Phase 1. `targets`: (pair, (units a, units b)) strongest first. Reductions are always admitted; a growing
    pair is admitted if the book with it and everything admitted before it breaches nothing."""
    current = {_key(leg): leg.units for leg in book}
    accepted: dict[tuple[str, str], float] = {}
    admitted: dict[str, tuple[float, float]] = {}
    growing = []
    for pair, (a, b) in targets:
        legs = {(pair, "a"): a, (pair, "b"): b}
        if any(grows(current.get(k, 0.0), v) for k, v in legs.items()):
            growing.append((pair, legs))
        else:
            accepted.update(legs)
            admitted[pair] = (a, b)
    vetoed: dict[str, list[Breach]] = {}
    for pair, legs in growing:
        trial = {**accepted, **legs}
        found = breaches(with_units(book, trial, leverage, template), equity, drawdown, limits)
        if found:
            vetoed[pair] = found
            continue
        accepted = trial
        admitted[pair] = (legs[(pair, "a")], legs[(pair, "b")])
    return Admission(admitted, vetoed)


def order_check(
    book: Sequence[BookLeg],
    in_flight: Mapping[tuple[str, str], float],
    order: tuple[tuple[str, str], float],
    template: Mapping[tuple[str, str], BookLeg],
    equity: float,
    drawdown: float,
    limits: RiskLimits,
    leverage: float,
    memo: dict[Any, list[Breach]] | None = None,
) -> list[Breach]:
    """Phase 2: the breaches that make an order wrong to send now (empty: send it). `in_flight`: the units
    each leg will hold when the orders already sent have filled; `order`: (leg key, units it adds). `memo`
    keeps each evaluated book's breaches: a decision's two legs leave the same book, evaluated once."""
    key, delta = order
    now = {_key(leg): leg.units for leg in book}
    after = dict(in_flight)
    start = after.get(key, now.get(key, 0.0))
    after[key] = start + delta
    if not grows(start, after[key]):
        return []
    seen = tuple(sorted(after.items()))
    if memo is not None and seen in memo:
        return memo[seen]
    found = breaches(with_units(book, after, leverage, template), equity, drawdown, limits)
    if memo is not None:
        memo[seen] = found
    return found
