"""Both legs of a pair in the same base quantity, within each venue's lot sizes.

A leg's market says its lot in the venue's amount unit (`precision.amount`: base units for spot and most
linear perps, contracts for okx swaps, with `contractSize` base units per contract) and its minimums
(`limits.amount.min`, `limits.cost.min`). A pair trades one base quantity `q` on both legs: `q` must be a
whole number of lots on each, so it is rounded down to a multiple of the least common multiple of the two
lots in base units. Pure functions of the ccxt market structures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class LegMarket:
    """One leg's market as sizing needs it (from a ccxt market structure: `LegMarket.of(market)`)."""

    exchange: str
    symbol: str
    kind: str  # "perp" or "spot"
    base: str
    quote: str
    contract_size: float  # base units per venue amount unit (1 for spot)
    lot: float  # the venue's amount step, in its own unit
    min_amount: float  # in the venue's unit (0: none)
    min_cost: float  # quote (0: none)

    @classmethod
    def of(cls, exchange: str, market: Mapping[str, Any]) -> LegMarket:
        swap = bool(market.get("swap") or market.get("contract"))
        limits = market.get("limits") or {}
        step = (market.get("precision") or {}).get("amount")
        if step is None or not float(step) > 0:
            raise ValueError(f"market {market.get('symbol')!r}: precision.amount {step!r} is not a step size")
        return cls(
            exchange=exchange,
            symbol=str(market["symbol"]),
            kind="perp" if swap else "spot",
            base=str(market["base"]),
            quote=str(market["quote"]),
            contract_size=float(market.get("contractSize") or 1.0) if swap else 1.0,
            lot=float(step),
            min_amount=float((limits.get("amount") or {}).get("min") or 0.0),
            min_cost=float((limits.get("cost") or {}).get("min") or 0.0),
        )

    @property
    def base_lot(self) -> float:
        return self.lot * self.contract_size

    def to_venue(self, base_qty: float) -> float:
        """Base units -> the venue's amount (contracts for a contract-sized swap), on the lot grid."""
        lots = round(abs(base_qty) / self.base_lot)
        return float(Fraction(str(self.lot)) * lots)

    def to_base(self, venue_amount: float) -> float:
        return float(venue_amount) * self.contract_size


def _fraction(x: float) -> Fraction:
    return Fraction(repr(float(x))).limit_denominator(10**12)


def common_lot(a: LegMarket, b: LegMarket) -> float:
    """The smallest base quantity that is a whole number of lots on both legs."""
    fa, fb = _fraction(a.base_lot), _fraction(b.base_lot)
    den = math.lcm(fa.denominator, fb.denominator)
    na, nb = fa.numerator * (den // fa.denominator), fb.numerator * (den // fb.denominator)
    return float(Fraction(math.lcm(na, nb), den))


def pair_quantity(base_qty: float, a: LegMarket, b: LegMarket, price: float) -> float:
    """`base_qty` rounded down to whole lots of both legs; 0 when that is under either leg's minimum amount
    or minimum cost at `price`."""
    lot = common_lot(a, b)
    q = math.floor(abs(base_qty) / lot + 1e-9) * lot
    q = float(_fraction(q))
    for leg in (a, b):
        if q <= 0 or leg.to_venue(q) < leg.min_amount - 1e-12 or q * price < leg.min_cost:
            return 0.0
    return q
