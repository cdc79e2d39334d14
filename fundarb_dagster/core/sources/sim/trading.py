"""The simulated market as the private API sees it (`execution.protocol.MarketDriver`): the clock, the book and
the marks at any time, and what the market does to an account between two times, found by scanning the
per-second paths rather than stepping through them:

- a resting limit order is reached at the first second whose opposite best crosses its price (`SimBook.first_cross`);
- an open perp position is paid or charged funding at each settlement: the settled rate (`Funding.settled_rate`,
  the venue's formula on the interval's premium samples) on the venue's reference price at that instant
  (`VenueFacts.funding_price`: the mark, or the oracle (index) price on hyperliquid);
- a position is liquidated at the first second whose mark takes its equity to its maintenance margin.

Events are handed over in time order (at one instant: funding, then fills, then liquidation), each scan
starting after the previous instant, so a fill or a payment changes what the next scan finds. Every event of
an instant is handed over before the scan moves past it: two perps of a venue settle at the same moment, and
each is paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...execution.protocol import AccountEvents
from ...units import HOUR_MS
from .book import SimBook
from .funding import Funding
from .markets import Market
from .subscriptions import Clock

FUNDING, FILL, LIQUIDATION = 0, 1, 2  # the order of events at one instant
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

    # -- events ---------------------------------------------------------------------------------------------
    def _next(self, account: AccountEvents, lo: int, hi: int) -> tuple[int, list[tuple[int, str]]] | None:
        """The earliest instant in (lo, hi] at which something happens, and every (kind, symbol) due then,
        in the order they are handed over (funding, fills, liquidations)."""
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
            end = min(hi, settlement)
            times, marks = self.book.marks(m, lo, end)
            i = account.first_liquidation(symbol, marks)
            if i is not None:
                due[(LIQUIDATION, symbol)] = int(times[i])
        if not due:
            return None
        first = min(due.values())
        return first, sorted(key for key, t in due.items() if t == first)

    def advance(self, account: AccountEvents, upto: int) -> None:
        lo = account.time
        while True:
            found = self._next(account, lo, upto)
            if found is None:
                return
            t, events = found
            for kind, symbol in events:
                m = self.markets[symbol]
                if kind == FUNDING:
                    account.on_funding(symbol, t, self.funding.settled_rate(m, t), self.reference_price(m, t))
                elif kind == FILL:
                    account.on_book(symbol, t, self.book.structure(m, t))
                elif symbol in account.open_symbols():  # a payment or fill at t may have closed it
                    account.on_liquidation(symbol, t, self.funding.mark_index(m, t)[0])
            lo = t

    def next_event(self, account: AccountEvents, after: int) -> int | None:
        horizon = after + LIQUIDATION_HORIZON_MS
        found = self._next(account, after, horizon)
        return None if found is None else found[0]
