"""The simulated market as the private API sees it (`execution.protocol.MarketDriver`): the clock, the book and
the marks at any time, and what the market does to an account between two times, found by scanning the
per-second paths rather than stepping through them:

- a resting limit order is reached at the first second whose opposite best crosses its price (`SimBook.first_cross`);
- an open perp position is paid or charged funding at each settlement: the settled rate (`Funding.settled_rate`,
  the venue's formula on the interval's premium samples) on the venue's reference price at that instant
  (`VenueFacts.funding_price`: the mark, or the oracle (index) price on hyperliquid);
- a position is liquidated at the first second whose mark takes its equity to its maintenance margin.

Events are handed over by `execution.protocol.hand_over` (time order; at one instant funding, then fills, then
liquidations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...execution.protocol import FILL, FUNDING, LIQUIDATION, AccountEvents, hand_over
from ...units import HOUR_MS
from .book import SimBook
from .funding import Funding
from .markets import Market
from .subscriptions import Clock

LIQUIDATION_HORIZON_MS = 8 * HOUR_MS  # how far `next_event` looks for a liquidation when no settlement is nearer


class SimMarket:
    """`MarketDriver` of a `SimExchange` (see the module doc); `markets` fills in at `load_markets`."""

    def __init__(self, markets: Mapping[str, Market], book: SimBook, funding: Funding, clock: Clock) -> None:
        self.markets = markets
        self.book = book
        self.funding = funding
        self.clock = clock

    def milliseconds(self) -> int:
        return self.clock.milliseconds()

    async def wait_until(self, t: int) -> None:
        await self.clock.wait_until(t)

    def order_book(self, symbol: str, t: int) -> dict[str, Any]:
        return self.book.structure(self.markets[symbol], t)

    def mark(self, symbol: str, t: int) -> float | None:
        m = self.markets[symbol]
        return self.funding.mark_index(m, t)[0] if m.swap else None

    def reference_price(self, m: Market, t: int) -> float:
        """The price a settlement at t is paid on: the mark, or the oracle (index) where the venue says so."""
        mark, index = self.funding.mark_index(m, t)
        return index if m.venue.facts.funding_price == "oracle" else mark

    def funding_at(self, symbol: str, t: int) -> tuple[float, float]:
        m = self.markets[symbol]
        return self.funding.settled_rate(m, t), self.reference_price(m, t)

    # -- events ---------------------------------------------------------------------------------------------
    def next_events(self, account: AccountEvents, lo: int, hi: int) -> tuple[int, list[tuple[int, str]]] | None:
        due: dict[tuple[int, str], int] = {}  # (kind, symbol) -> time
        for symbol, side, price in account.resting():
            t = self.book.first_cross(self.markets[symbol], side, price, lo, hi)
            if t is not None:
                due[(FILL, symbol)] = min(t, due.get((FILL, symbol), t))
        for symbol in account.open_symbols():
            m = self.markets[symbol]
            settlement = self.funding.next_settlement(m.venue.index, m.a, lo)
            if settlement <= hi:
                due[(FUNDING, symbol)] = settlement
            times, marks = self.book.marks(m, lo, min(hi, settlement))
            i = account.first_liquidation(symbol, marks)
            if i is not None:
                due[(LIQUIDATION, symbol)] = int(times[i])
        if not due:
            return None
        first = min(due.values())
        return first, sorted(key for key, t in due.items() if t == first)

    def advance(self, account: AccountEvents, upto: int) -> None:
        hand_over(self, account, upto)

    def next_event(self, account: AccountEvents, after: int) -> int | None:
        horizon = after + LIQUIDATION_HORIZON_MS
        found = self.next_events(account, after, horizon)
        return None if found is None else found[0]
