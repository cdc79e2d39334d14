"""The ccxt private surface the trader uses, as a `typing.Protocol`, and what a market gives the private API.

`PrivateVenue` is the contract every venue kind meets (`SimExchange`, `PaperExchange` over any market-data
source, and a live ccxt.pro object, dry-run or not): ccxt's method names, arguments and unified structures
(order, trade, position, balance, funding history, leverage tiers). `tests/core/execution/
test_conformance.py` runs the same scenario through each kind. A method a venue cannot do raises
`ccxt.NotSupported`, never returns something home-made.

`MarketDriver` is what `private.PrivateApi` (the one implementation of the private side for the simulator
and paper venues) needs from the market it trades on: its clock, its book and marks at a time, and the
events (resting orders crossed, funding settlements, liquidations) between two times. Both drivers (the
simulator's computed market, `sources/sim/trading.py`, and a paper venue's streamed one, `paper.py`) find the
next instant something happens (`EventScan`) and hand the events over with the one loop here (`hand_over`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

# The private methods, in the order the Protocol lists them (a venue kind exposes each of them).
PRIVATE_METHODS: Final = (
    "create_order",
    "cancel_order",
    "fetch_order",
    "fetch_orders",
    "fetch_open_orders",
    "fetch_closed_orders",
    "fetch_my_trades",
    "fetch_positions",
    "fetch_balance",
    "set_leverage",
    "set_margin_mode",
    "fetch_funding_history",
    "fetch_my_liquidations",
    "fetch_leverage_tiers",
    "fetch_market_leverage_tiers",
    "watch_orders",
    "watch_my_trades",
)

# ccxt's `has` flags of those methods (`fetchMyTrades`, ...), which every venue kind sets
PRIVATE_HAS: Final = {
    name.split("_")[0] + "".join(part.capitalize() for part in name.split("_")[1:]): True for name in PRIVATE_METHODS
}

Structure = dict[str, Any]
FUNDING, FILL, LIQUIDATION = 0, 1, 2  # the order in which the events of one instant are handed over


@runtime_checkable
class PrivateVenue(Protocol):
    """What the trader calls on a venue: ccxt's unified private API (plus the public calls it prices with)."""

    id: str
    markets: dict[str, Structure]
    has: dict[str, Any]

    def milliseconds(self) -> int: ...
    async def load_markets(self, reload: bool = False) -> dict[str, Structure]: ...
    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> Structure: ...
    async def fetch_order_book(
        self, symbol: str, limit: int | None = None, params: dict | None = None
    ) -> Structure: ...
    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict | None = None,
    ) -> Structure: ...
    async def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> Structure: ...
    async def fetch_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> Structure: ...
    async def fetch_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_open_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_closed_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_my_trades(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_positions(
        self, symbols: Sequence[str] | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_balance(self, params: dict | None = None) -> Structure: ...
    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: dict | None = None
    ) -> Structure: ...
    async def set_margin_mode(
        self, marginMode: str, symbol: str | None = None, params: dict | None = None
    ) -> Structure: ...
    async def fetch_funding_history(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_my_liquidations(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def fetch_leverage_tiers(
        self, symbols: Sequence[str] | None = None, params: dict | None = None
    ) -> dict[str, list[Structure]]: ...
    async def fetch_market_leverage_tiers(self, symbol: str, params: dict | None = None) -> list[Structure]: ...
    async def watch_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def watch_my_trades(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[Structure]: ...
    async def close(self) -> None: ...


class AccountEvents(Protocol):
    """What a market driver tells the private API (`private.PrivateApi`) and asks it."""

    time: int  # market time the account has been brought up to

    def resting(self) -> list[tuple[str, str, float]]:
        """(symbol, side, limit price) of every resting order that can fill."""
        ...

    def open_symbols(self) -> list[str]:
        """The perps the account holds a position in."""
        ...

    def first_liquidation(self, symbol: str, marks: np.ndarray) -> int | None:
        """Index of the first of these marks at which the position would be liquidated."""
        ...

    def on_book(self, symbol: str, t: int, book: Mapping[str, Any]) -> None: ...
    def on_funding(self, symbol: str, t: int, rate: float, reference: float) -> None: ...
    def on_liquidation(self, symbol: str, t: int, mark: float) -> None: ...


class MarketDriver(Protocol):
    """A market as the private API sees it (the simulator computes it; a paper venue streams it)."""

    def milliseconds(self) -> int: ...
    async def wait_until(self, t: int) -> None: ...
    def order_book(self, symbol: str, t: int) -> Mapping[str, Any] | None:
        """ccxt's order-book structure in force at t (for a stream: the latest known), None if none."""
        ...

    def mark(self, symbol: str, t: int) -> float | None:
        """The mark price at t (the latest known), None if unknown."""
        ...

    def advance(self, account: AccountEvents, upto: int) -> None:
        """Tell the account what happened in (account.time, upto], in time order."""
        ...

    def next_event(self, account: AccountEvents, after: int) -> int | None:
        """When the market next does something to the account after `after`, if it can be known ahead."""
        ...


class EventScan(Protocol):
    """How a market driver finds and prices the events it hands over (`hand_over`)."""

    def next_events(self, account: AccountEvents, lo: int, hi: int) -> tuple[int, list[tuple[int, str]]] | None:
        """The earliest instant in (lo, hi] at which something happens to the account, and every (kind, symbol)
        due then, sorted (funding, fills, liquidations; by symbol)."""
        ...

    def funding_at(self, symbol: str, t: int) -> tuple[float, float]:
        """(settled rate, reference price) of the settlement at t."""
        ...

    def order_book(self, symbol: str, t: int) -> Mapping[str, Any] | None: ...

    def mark(self, symbol: str, t: int) -> float | None: ...


def hand_over(scan: EventScan, account: AccountEvents, upto: int) -> None:
    """Tell the account what happened in (account.time, upto], in time order. Each scan starts after the previous
    instant, so a fill or a payment changes what the next scan finds; every event of an instant is handed over
    before the scan moves past it (two perps of a venue settle at the same moment, and each is paid)."""
    lo = account.time
    while True:
        found = scan.next_events(account, lo, upto)
        if found is None:
            return
        t, events = found
        for kind, symbol in events:
            if kind == FUNDING:
                account.on_funding(symbol, t, *scan.funding_at(symbol, t))
            elif kind == FILL:
                book = scan.order_book(symbol, t)
                if book is not None:
                    account.on_book(symbol, t, book)
            elif symbol in account.open_symbols():  # a payment or a fill at t may have closed it
                mark = scan.mark(symbol, t)
                if mark is not None:
                    account.on_liquidation(symbol, t, mark)
        lo = t
