"""`PrivateApi`: ccxt's unified private API over an account, its orders and a market: the one implementation
behind the simulator's and the paper venues' private side.

Given a `MarketDriver` (the simulator's computed market, or a paper venue's streamed one), an `Account` and a
`Matching` engine, it answers ccxt's private calls with ccxt's structures. Before answering it brings the
account up to the market's clock (`sync`: resting orders the market reached, funding settlements,
liquidations, in time order). An order travels: it is sent at the clock's now, reaches the venue `latency`
later (the book it meets is the book then), and its answer comes back `latency` after that. Faults (a
callable `(symbol, seq) -> kind | None`, the simulator's `FaultPlan`) make the venue refuse an order
(`reject`), lose its answer (`timeout`: placed, `ccxt.RequestTimeout`), keep it unfilled (`never_fills`), or
drop the connection after placing it (`disconnect`: `ccxt.NetworkError`, and the private streams break:
their next call raises `ccxt.NetworkError` and what happened meanwhile is not sent, only fetchable).

Private streams (`watch_orders`, `watch_my_trades`) return the updates since the previous call of the same
subscription (ccxt.pro's `newUpdates` behaviour), waiting for the next one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import ccxt
import numpy as np

from . import rules
from .account import Account
from .book import vwap as book_vwap
from .book import walk_book
from .matching import CLOSED, TIME_IN_FORCE, Matching, Order
from .protocol import PRIVATE_METHODS, MarketDriver
from .structures import iso

OrderFaults = Callable[[str, int], "str | None"]  # (symbol, order sequence number) -> fault kind or None
Latency = Callable[[int], int]  # order sequence number -> one-way latency, market ms
TierSource = Callable[[str], list[dict[str, Any]]]
ORDER_TYPES: Final = ("market", "limit")
MAX_WAIT_S: Final = 1.0  # a private stream re-checks the market at least this often (wall seconds)


def no_latency(seq: int) -> int:
    return 0


class PrivateApi:
    """ccxt's private API of one venue account (see the module doc)."""

    def __init__(
        self,
        venue: str,
        markets: Callable[[], Mapping[str, dict[str, Any]]],
        load_markets: Callable[[], Awaitable[Any]],
        market: MarketDriver,
        tiers: TierSource,
        balances: Mapping[str, float],
        *,
        latency: Latency = no_latency,
        faults: OrderFaults | None = None,
    ) -> None:
        self.venue = venue
        self._markets = markets
        self._load_markets = load_markets
        self.market = market
        self.tiers = tiers
        self.account = Account(venue, balances, tiers)
        self.matching = Matching(venue, self.account)
        self.latency = latency
        self.faults = faults
        self.time = -1  # market time the account has been brought up to
        self._seq = itertools.count(1)
        self._cursors: dict[tuple[str, str | None], int] = {}
        self._broken: set[tuple[str, str | None]] = set()
        self.lost: dict[tuple[str, str | None], int] = {}  # stream updates a disconnect kept from a subscription
        self._changed: asyncio.Event | None = None

    # -- plumbing -------------------------------------------------------------------------------------------
    async def _ready(self) -> Mapping[str, dict[str, Any]]:
        if not self._markets():
            await self._load_markets()
        return self._markets()

    async def _market(self, symbol: str | None) -> dict[str, Any]:
        markets = await self._ready()
        if symbol is None:
            raise ccxt.ArgumentsRequired(f"{self.venue}: symbol is required")
        if symbol not in markets:
            raise ccxt.BadSymbol(f"{self.venue}: symbol {symbol!r} is not listed")
        return markets[symbol]

    def sync(self, upto: int | None = None) -> None:
        """Bring the account up to market time `upto` (default: the market's clock)."""
        upto = self.market.milliseconds() if upto is None else upto
        if upto > self.time:
            self.market.advance(self, upto)
            self.time = upto

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- AccountEvents (what a market driver tells the account) -------------------------------------------
    def resting(self) -> list[tuple[str, str, float]]:
        return [(o.symbol, o.side, float(o.price)) for o in self.matching.resting() if not o.stuck and o.price]

    def open_symbols(self) -> list[str]:
        return [s for s, p in self.account.positions.items() if p.contracts]

    def first_liquidation(self, symbol: str, marks: np.ndarray) -> int | None:
        return self.account.first_liquidation(symbol, marks)

    def on_book(self, symbol: str, t: int, book: Mapping[str, Any]) -> None:
        markets = self._markets()
        if symbol in markets and self.matching.resting(symbol):
            before = len(self.matching.events)
            self.matching.on_book(markets[symbol], t, book)
            if len(self.matching.events) > before:
                self._notify()

    def on_funding(self, symbol: str, t: int, rate: float, reference: float) -> None:
        markets = self._markets()
        if symbol in markets and self.account.settle_funding(markets[symbol], t, rate, reference) is not None:
            self._notify()

    def on_liquidation(self, symbol: str, t: int, mark: float) -> None:
        market = self._markets()[symbol]
        contracts, side, _ = self.account.liquidate(market, t, mark)
        self.matching.liquidation_fill(market, contracts, side, mark, t)
        self._notify()

    # -- orders ---------------------------------------------------------------------------------------------
    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict | None = None,
    ) -> dict[str, Any]:
        market = await self._market(symbol)
        params = dict(params or {})
        order_type, time_in_force, post_only = _order_kind(type, side, price, params)
        amount = rules.amount_to_precision(market, amount)
        price = rules.price_to_precision(market, price) if price is not None and order_type == "limit" else None
        client_id = params.get("clientOrderId")
        client_id = None if client_id is None else str(client_id)
        reduce_only = bool(params.get("reduceOnly", False))
        seq = next(self._seq)
        fault = self.faults(symbol, seq) if self.faults is not None else None
        arrival = self.market.milliseconds() + self.latency(seq)
        await self.market.wait_until(arrival)
        self.sync(arrival)
        if fault == "reject":
            await self.market.wait_until(arrival + self.latency(seq))
            raise rules.venue_error(self.venue, "busy", spot=bool(market.get("spot")))
        order = Order(
            self.matching.next_order_id(),
            client_id,
            symbol,
            order_type,
            side,
            amount,
            price,
            time_in_force,
            post_only,
            reduce_only,
            arrival,
            stuck=fault == "never_fills",
        )
        self._accept(order, market, arrival)
        answer = order.to_ccxt(market)
        self._notify()
        await self.market.wait_until(arrival + self.latency(seq))
        if fault == "timeout":
            raise ccxt.RequestTimeout(
                f"{self.venue} POST order {symbol}: request timed out (the venue may have placed it)"
            )
        if fault == "disconnect":
            self._break_streams()
            raise ccxt.NetworkError(f"{self.venue} POST order {symbol}: connection lost (the venue may have placed it)")
        return answer

    def _accept(self, order: Order, market: Mapping[str, Any], t: int) -> None:
        """The venue's checks at arrival (duplicate id, minimum notional, margin, reduce-only), then matching."""
        spot = bool(market.get("spot"))
        self.matching.check_client_id(order.client_order_id, market)
        book = self.market.order_book(order.symbol, t)
        price = order.price if order.price is not None else self._taker_price(order, market, book, t)
        size = float(market.get("contractSize") or 1.0)
        minimum = rules.min_notional(market)
        if minimum is not None and not order.reduce_only and order.amount * size * price < minimum:
            raise rules.venue_error(self.venue, "min_notional", spot=spot, min=f"{minimum:g}")
        rate = self.matching.fee_rate(market, taker=True)
        hold = self.account.check_order(market, order.side, order.amount, price, order.reduce_only, rate)
        self.matching.submit(order, market, book, hold, t)

    def _taker_price(self, order: Order, market: Mapping[str, Any], book: Mapping[str, Any] | None, t: int) -> float:
        """What a market order is expected to pay: its walk of the book (the rest at the last level), else the mark."""
        levels = self.matching.available(order.symbol, book, order.side) if book is not None else []
        fills, rest = walk_book(levels, order.amount, order.side)
        if fills:
            return (book_vwap(fills) * (order.amount - rest) + fills[-1][0] * rest) / order.amount
        mark = self.market.mark(order.symbol, t)
        if mark is None:
            raise ccxt.ExchangeError(f"{self.venue}: no price for {order.symbol} at {iso(t)}: no book and no mark")
        return mark

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> dict[str, Any]:
        await self._ready()
        order = self._find(id, params)
        market = self._markets()[order.symbol]
        seq = next(self._seq)
        arrival = self.market.milliseconds() + self.latency(seq)
        await self.market.wait_until(arrival)
        self.sync(arrival)
        self.matching.cancel(order, market, arrival)  # a fill that arrived first wins: then OrderNotFound
        self._notify()
        return order.to_ccxt(market)

    def _find(self, id: str | None, params: Mapping[str, Any] | None) -> Order:
        client_id = (params or {}).get("clientOrderId")
        order = self.matching.find(id, None if client_id is None else str(client_id))
        if order is None:
            raise rules.venue_error(self.venue, "order_not_found")
        return order

    async def fetch_order(
        self, id: str | None, symbol: str | None = None, params: dict | None = None
    ) -> dict[str, Any]:
        """An order by id, or by `params={'clientOrderId': ...}` (the latest order that used it)."""
        await self._ready()
        self.sync()
        order = self._find(id, params)
        return order.to_ccxt(self._markets()[order.symbol])

    async def _orders(
        self, keep: Callable[[Order], bool], symbol: str | None, since: int | None, limit: int | None
    ) -> list[dict[str, Any]]:
        markets = await self._ready()
        self.sync()
        out = [
            o.to_ccxt(markets[o.symbol])
            for o in self.matching.orders.values()
            if keep(o) and (symbol is None or o.symbol == symbol) and (since is None or o.timestamp >= since)
        ]
        return _page(out, since, limit)

    async def fetch_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        return await self._orders(lambda o: True, symbol, since, limit)

    async def fetch_open_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        return await self._orders(lambda o: o.status == "open", symbol, since, limit)

    async def fetch_closed_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        return await self._orders(lambda o: o.status in CLOSED, symbol, since, limit)

    async def fetch_my_trades(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        await self._ready()
        self.sync()
        rows = [t for t in self.matching.trades if (symbol is None or t["symbol"] == symbol)]
        return _page([t for t in rows if since is None or t["timestamp"] >= since], since, limit)

    # -- account --------------------------------------------------------------------------------------------
    def _marks(self, t: int) -> dict[str, float]:
        out = {}
        for symbol in self.open_symbols():
            mark = self.market.mark(symbol, t)
            if mark is not None:
                out[symbol] = mark
        return out

    async def fetch_positions(
        self, symbols: Sequence[str] | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        markets = await self._ready()
        self.sync()
        t = max(self.time, 0)
        out = []
        for symbol in self.open_symbols():
            if symbols is None or symbol in symbols:
                position = self.account.position(markets[symbol], self.market.mark(symbol, t), t)
                if position is not None:
                    out.append(position)
        return out

    async def fetch_balance(self, params: dict | None = None) -> dict[str, Any]:
        await self._ready()
        self.sync()
        t = max(self.time, 0)
        return self.account.balance(self._marks(t), t)

    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: dict | None = None
    ) -> dict[str, Any]:
        market = await self._market(symbol)
        self.sync()
        self.account.set_leverage(market, float(leverage))
        info = {"symbol": market["id"], "leverage": float(leverage)}
        return {
            "info": info,
            "symbol": market["symbol"],
            "marginMode": "isolated",
            "longLeverage": float(leverage),
            "shortLeverage": float(leverage),
        }

    async def set_margin_mode(
        self, marginMode: str, symbol: str | None = None, params: dict | None = None
    ) -> dict[str, Any]:
        market = await self._market(symbol)
        if str(marginMode).lower() != "isolated":
            raise ccxt.NotSupported(
                f"{self.venue}: margin mode {marginMode!r}: this venue kind runs isolated margin only"
            )
        return {
            "info": {"symbol": market["id"], "marginType": "ISOLATED"},
            "symbol": market["symbol"],
            "marginMode": "isolated",
        }

    async def fetch_funding_history(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """The funding the account received (> 0) or paid (< 0) at each settlement, ascending."""
        await self._ready()
        self.sync()
        rows = [r for r in self.account.funding_history if symbol is None or r["symbol"] == symbol]
        return _page([r for r in rows if since is None or r["timestamp"] >= since], since, limit)

    async def fetch_my_liquidations(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        await self._ready()
        self.sync()
        rows = [r for r in self.account.liquidations if symbol is None or r["symbol"] == symbol]
        return _page([r for r in rows if since is None or r["timestamp"] >= since], since, limit)

    async def fetch_leverage_tiers(
        self, symbols: Sequence[str] | None = None, params: dict | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        markets = await self._ready()
        wanted = list(symbols) if symbols else [s for s, m in markets.items() if m.get("contract")]
        return {s: self.tiers((await self._market(s))["symbol"]) for s in wanted}

    async def fetch_market_leverage_tiers(self, symbol: str, params: dict | None = None) -> list[dict[str, Any]]:
        market = await self._market(symbol)
        if not market.get("contract"):
            raise ccxt.BadRequest(
                f"{self.venue}: {symbol} is not a contract market; leverage tiers exist for contracts"
            )
        return self.tiers(symbol)

    # -- private streams ------------------------------------------------------------------------------------
    async def watch_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        return await self._watch("order", symbol, limit)

    async def watch_my_trades(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        return await self._watch("trade", symbol, limit)

    def _break_streams(self) -> None:
        self._broken.update(self._cursors)

    async def _watch(self, kind: str, symbol: str | None, limit: int | None) -> list[dict[str, Any]]:
        await self._ready()
        key = (kind, symbol)
        events = self.matching.events
        if key not in self._cursors:
            self.sync()
            self._cursors[key] = len(events)  # a subscription starts now, like ccxt.pro's
        while True:
            if key in self._broken:
                self._broken.discard(key)
                self.sync()
                missed = [
                    e
                    for k, e in events[self._cursors[key] :]
                    if k == kind and (symbol is None or e["symbol"] == symbol)
                ]
                self.lost[key] = self.lost.get(key, 0) + len(missed)
                self._cursors[key] = len(events)
                raise ccxt.NetworkError(f"{self.venue} private stream {kind}s: connection lost")
            self.sync()
            start = self._cursors[key]
            new = [e for k, e in events[start:] if k == kind and (symbol is None or e["symbol"] == symbol)]
            self._cursors[key] = len(events)
            if new:
                return new[-int(limit) :] if limit else new
            await self._wait(self.market.next_event(self, self.time))

    async def _wait(self, target: int | None) -> None:
        """Until the account changes, or the market's next event is due (at most `MAX_WAIT_S` of wall time)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = asyncio.ensure_future(self._changed.wait())
        due = asyncio.ensure_future(self.market.wait_until(target)) if target is not None else None
        waiting = [changed] if due is None else [changed, due]
        try:
            await asyncio.wait(waiting, timeout=MAX_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()


def _order_kind(type: str, side: str, price: float | None, params: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(order type, time in force, post-only) from ccxt's unified arguments; client-side errors as ccxt's."""
    if type not in ORDER_TYPES:
        raise ccxt.InvalidOrder(f"type: {type!r}; expected one of {list(ORDER_TYPES)}")
    if side not in ("buy", "sell"):
        raise ccxt.InvalidOrder(f"side: {side!r}; expected 'buy' or 'sell'")
    time_in_force = str(params.get("timeInForce", "GTC")).upper()
    if time_in_force not in TIME_IN_FORCE:
        raise ccxt.InvalidOrder(f"timeInForce: {time_in_force!r}; expected one of {list(TIME_IN_FORCE)}")
    post_only = bool(params.get("postOnly", False)) or time_in_force == "PO"
    if type == "limit" and price is None:
        raise ccxt.ArgumentsRequired("price: a limit order needs a price")
    if post_only and type != "limit":
        raise ccxt.InvalidOrder("postOnly: only limit orders can be post-only")
    if type == "market":
        time_in_force = "IOC"
    return type, time_in_force, post_only


def _page(rows: list[dict[str, Any]], since: int | None, limit: int | None) -> list[dict[str, Any]]:
    """ccxt's paging: ascending; with `since` the first `limit` rows from it, without it the latest `limit`."""
    rows = sorted(rows, key=lambda r: r["timestamp"])
    if not limit:
        return rows
    return rows[: int(limit)] if since is not None else rows[-int(limit) :]


def bind_private(target: Any, api: PrivateApi) -> None:
    """Expose `api`'s private methods (`protocol.PRIVATE_METHODS`) on a venue object, by composition."""
    for name in PRIVATE_METHODS:
        setattr(target, name, getattr(api, name))
