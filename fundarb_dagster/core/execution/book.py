"""Walking an L2 order book: what a taker gets for a size, level by level. Pure functions, no venue.

A book side is ccxt's `[[price, amount], ...]`, best first (bids descending, asks ascending); amounts are in
the market's amount unit (contracts where the venue counts them). A buy walks the asks, a sell the bids.

    fills, rest = walk_book([[100.0, 1.0], [100.5, 2.0]], 2.5)   # ([(100.0, 1.0), (100.5, 1.5)], 0.0)
    vwap(fills)                                                  # 100.3
"""

from __future__ import annotations

from collections.abc import Sequence

Level = Sequence[float]  # [price, amount] (ccxt's order-book row)
Fill = tuple[float, float]  # (price, amount)

EPSILON = 1e-12  # amounts below this are nothing (float dust from subtracting level sizes)


def crosses(side: str, price: float, limit: float | None) -> bool:
    """Whether a level at `price` is acceptable to a `side` taker with a limit price (None: any price)."""
    if limit is None:
        return True
    return price <= limit if side == "buy" else price >= limit


def walk_book(
    levels: Sequence[Level], amount: float, side: str = "buy", limit: float | None = None
) -> tuple[list[Fill], float]:
    """Take up to `amount` from the opposite side's `levels` (best first), stopping at `limit` if given.

    Returns the fills, best first, and the amount left unfilled (the size beyond the book's depth or limit).
    """
    if amount < 0:
        raise ValueError(f"amount: {amount!r} must be >= 0")
    if side not in ("buy", "sell"):
        raise ValueError(f"side: {side!r}; expected 'buy' or 'sell'")
    fills: list[Fill] = []
    left = float(amount)
    for price, size in ((float(level[0]), float(level[1])) for level in levels):
        if left <= EPSILON or not crosses(side, price, limit):
            break
        if size <= EPSILON:
            continue
        take = min(left, size)
        fills.append((price, take))
        left -= take
    return fills, (0.0 if left <= EPSILON else left)


def vwap(fills: Sequence[Fill]) -> float:
    """The volume-weighted average price of fills (NaN for none)."""
    filled = sum(a for _, a in fills)
    return sum(p * a for p, a in fills) / filled if filled > 0 else float("nan")


def depth(levels: Sequence[Level], side: str, limit: float | None) -> float:
    """The amount a `side` taker finds at prices no worse than `limit` (None: all of the opposite `levels`)."""
    return sum(float(a) for p, a in levels if crosses(side, float(p), limit))
