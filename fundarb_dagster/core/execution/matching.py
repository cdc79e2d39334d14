"""Matching an account's orders against a venue's book: taker walks, resting limit orders, crossing fills.

- A market order walks the opposite side of the book at its arrival (level by level, one trade per level,
  taker fee); what the book's depth cannot fill expires (ccxt status `expired`, `remaining` > 0).
- A limit order takes what crosses its price at arrival (taker), then rests (`GTC`), or expires the rest
  (`IOC`), or fills whole or not at all (`FOK`). A resting order fills at its own price (maker fee) when the
  market comes to it: at each book update where the opposite side reaches its price, up to the depth there.
- Post-only: an order that would take is refused with the venue's error (binance, hyperliquid) or accepted
  and canceled at once (`rules.POST_ONLY_CANCELS`: bybit, okx), as those venues do.
- Reduce-only: checked at acceptance (`Account.check_order`); a resting one never fills beyond the position
  left, and is canceled when nothing is left to reduce.
- Liquidity taken within one book update is gone for the next order in the same update (the book at a
  nonce is shared); a new update brings the venue's full book back (the simulated market is exogenous).
- `clientOrderId`s are unique per venue rule (`DUPLICATE_SCOPE`): binance refuses one that an *open* order
  holds (its documented rule: "unique among open orders"), the others any they have seen.

Every change is appended to `events` (order snapshots and trades, as ccxt structures) for the private
streams (`watch_orders`, `watch_my_trades`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..venues import fees_bps
from . import structures
from .account import Account
from .book import EPSILON, crosses, depth, walk_book
from .rules import POST_ONLY_CANCELS, venue_error
from .structures import UNIFIED, iso

TIME_IN_FORCE: Final = ("GTC", "IOC", "FOK", "PO")
DUPLICATE_SCOPE: Final[dict[str, str]] = {"binance": "open"}  # else "all": a client id is never reused
CLOSED: Final = ("closed", "canceled", "expired", "rejected")

Book = Mapping[str, Any]  # ccxt's order-book structure: bids, asks ([[price, amount], ...]), timestamp, nonce


@dataclass
class Order:
    """One order of the account (amounts in the market's amount unit)."""

    id: str
    client_order_id: str | None
    symbol: str
    type: str  # market | limit
    side: str  # buy | sell
    amount: float
    price: float | None
    time_in_force: str
    post_only: bool
    reduce_only: bool
    timestamp: int  # accepted by the venue
    status: str = "open"
    filled: float = 0.0
    cost: float = 0.0
    fee_cost: float = 0.0
    fee_currency: str = ""
    trades: list[dict[str, Any]] = field(default_factory=list)
    last_trade_ms: int | None = None
    updated_ms: int = 0
    stuck: bool = False  # the never-fills fault: accepted, rests, never fills
    reason: str | None = None  # why it ended unfilled or short (venue wording in `info`)

    @property
    def remaining(self) -> float:
        left = self.amount - self.filled
        return 0.0 if left <= EPSILON else left

    def to_ccxt(self, market: Mapping[str, Any]) -> dict[str, Any]:
        """ccxt's order structure, completed by ccxt's `safe_order` (average, remaining, fees)."""
        fee = {"cost": self.fee_cost, "currency": self.fee_currency} if self.trades else None
        return UNIFIED.safe_order(
            {
                "info": {"orderId": self.id, "clientOrderId": self.client_order_id, "reason": self.reason},
                "id": self.id,
                "clientOrderId": self.client_order_id,
                "timestamp": self.timestamp,
                "datetime": iso(self.timestamp),
                "lastTradeTimestamp": self.last_trade_ms,
                "lastUpdateTimestamp": self.updated_ms,
                "symbol": self.symbol,
                "type": self.type,
                "timeInForce": self.time_in_force,
                "postOnly": self.post_only,
                "reduceOnly": self.reduce_only,
                "side": self.side,
                "price": self.price,
                "triggerPrice": None,
                "amount": self.amount,
                "filled": self.filled,
                "remaining": self.remaining,
                "cost": self.cost,
                "average": self.cost / (self.filled * float(market.get("contractSize") or 1.0))
                if self.filled
                else None,
                "status": self.status,
                "fee": fee,
                "trades": list(self.trades),
            },
            market,
        )


class Matching:
    """The orders of one account and their fills (see the module doc)."""

    def __init__(self, venue: str, account: Account) -> None:
        self.venue = venue
        self.account = account
        self.fees = fees_bps(venue)
        self.orders: dict[str, Order] = {}
        self.client_ids: dict[str, str] = {}
        self.trades: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []  # ("order" | "trade", ccxt structure)
        self._consumed: dict[tuple[str, Any, str], dict[float, float]] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)

    # -- ids and rates ------------------------------------------------------------------------------------
    def next_order_id(self) -> str:
        return str(next(self._order_ids))

    def fee_rate(self, market: Mapping[str, Any], taker: bool) -> float:
        kind = "spot" if market.get("spot") else "perp"
        return (self.fees.taker(kind) if taker else self.fees.maker(kind)) / 1e4

    def check_client_id(self, client_order_id: str | None, market: Mapping[str, Any]) -> None:
        """Refuse a client id the venue would call a duplicate."""
        if client_order_id is None or client_order_id not in self.client_ids:
            return
        held = self.orders[self.client_ids[client_order_id]]
        if DUPLICATE_SCOPE.get(self.venue, "all") == "open" and held.status in CLOSED:
            return
        raise venue_error(self.venue, "duplicate_client_order_id", spot=bool(market.get("spot")))

    def find(self, order_id: str | None, client_order_id: str | None = None) -> Order | None:
        if order_id is not None:
            return self.orders.get(str(order_id))
        if client_order_id is not None and client_order_id in self.client_ids:
            return self.orders[self.client_ids[client_order_id]]
        return None

    def resting(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.status == "open" and (symbol is None or o.symbol == symbol)]

    # -- the book as this account sees it ---------------------------------------------------------------
    def _key(self, symbol: str, book: Book, side: str) -> tuple[str, Any, str]:
        return (symbol, book.get("nonce") if book.get("nonce") is not None else book.get("timestamp"), side)

    def available(self, symbol: str, book: Book, taker_side: str) -> list[list[float]]:
        """The opposite side's levels less what this account already took at this book update."""
        side = "asks" if taker_side == "buy" else "bids"
        used = self._consumed.get(self._key(symbol, book, side), {})
        out = []
        for level in book.get(side) or []:
            left = float(level[1]) - used.get(float(level[0]), 0.0)
            if left > EPSILON:
                out.append([float(level[0]), left])
        return out

    def _consume(self, symbol: str, book: Book, taker_side: str, fills: list[tuple[float, float]]) -> None:
        key = self._key(symbol, book, "asks" if taker_side == "buy" else "bids")
        if key not in self._consumed:
            stale = [k for k in self._consumed if k[0] == symbol and k[1] != key[1]]
            for k in stale:  # a newer update refreshed the book: forget what was taken from older ones
                del self._consumed[k]
        used = self._consumed.setdefault(key, {})
        for price, amount in fills:
            used[price] = used.get(price, 0.0) + amount

    # -- order flow ---------------------------------------------------------------------------------------
    def submit(
        self, order: Order, market: Mapping[str, Any], book: Book | None, hold: tuple[str, float], t: int
    ) -> None:
        """Accept an order at its arrival and match what crosses; `hold` is what the account holds for it."""
        order.fee_currency = market.get("settle") or market["quote"]
        order.updated_ms = t
        levels = self.available(order.symbol, book, order.side) if book is not None else []
        if order.post_only and levels and crosses(order.side, levels[0][0], order.price):
            if self.venue not in POST_ONLY_CANCELS:
                bbo = f"{levels[0][0]}"
                raise venue_error(self.venue, "post_only", spot=bool(market.get("spot")), bbo=bbo)
            self._register(order)
            self._end(order, market, "canceled", "post-only order would take liquidity", t)
            return
        self._register(order)
        if order.stuck:
            self.account.reserve(order.id, *hold)
            self._log_order(order, market)
            return
        limit = order.price if order.type == "limit" else None
        if order.time_in_force == "FOK" and depth(levels, order.side, limit) < order.amount - EPSILON:
            self._end(order, market, "expired", "fill-or-kill: not enough depth", t)
            return
        fills, _ = walk_book(levels, self._fillable(order, order.amount), order.side, limit)
        self._execute(order, market, book, fills, t, taker=True)
        if order.remaining <= EPSILON:
            self._end(order, market, "closed", None, t)
        elif order.type == "market":
            self._end(order, market, "expired", "book depth exhausted", t)
        elif order.time_in_force in ("IOC", "FOK"):
            self._end(
                order, market, "expired" if order.time_in_force == "FOK" else "canceled", "immediate-or-cancel rest", t
            )
        else:
            code, amount = hold
            self.account.reserve(order.id, code, amount * order.remaining / order.amount)
            self._log_order(order, market)

    def on_book(self, market: Mapping[str, Any], t: int, book: Book) -> None:
        """A book update: resting orders of the market it reached fill at their price (maker)."""
        symbol = market["symbol"]
        for order in self.resting(symbol):
            if order.stuck or order.timestamp > t:
                continue
            levels = self.available(symbol, book, order.side)
            room = self._fillable(order, order.remaining)
            if room <= EPSILON:
                if order.reduce_only:
                    self._end(order, market, "canceled", "reduce-only: nothing left to reduce", t)
                continue
            fills, _ = walk_book(levels, room, order.side, order.price)
            if not fills:
                continue
            self._consume(symbol, book, order.side, fills)
            taken = sum(a for _, a in fills)
            self._execute(order, market, None, [(float(order.price), taken)], t, taker=False)
            if order.remaining <= EPSILON:
                self._end(order, market, "closed", None, t)
            else:
                code, held = self.account.reserved.get(order.id, (market.get("settle") or market["quote"], 0.0))
                self.account.reserve(order.id, code, held * order.remaining / (order.remaining + taken))
                self._log_order(order, market)

    def cancel(self, order: Order, market: Mapping[str, Any], t: int) -> None:
        if order.status != "open":
            raise venue_error(self.venue, "order_not_found", spot=bool(market.get("spot")))
        self._end(order, market, "canceled", None, t)

    def liquidation_fill(self, market: Mapping[str, Any], contracts: float, side: str, price: float, t: int) -> None:
        """The venue's closing order and trade of a liquidation (no fee: the lost margin covers it)."""
        order = Order(
            self.next_order_id(), None, market["symbol"], "market", side, contracts, None, "IOC", False, True, t
        )
        order.fee_currency = market.get("settle") or market["quote"]
        order.reason = "liquidation"
        self._register(order)
        trade = self._trade(order, market, price, contracts, 0.0, 0.0, t, taker=True)
        order.filled, order.cost = contracts, price * contracts * float(market.get("contractSize") or 1.0)
        order.trades.append(trade)
        self._end(order, market, "closed", "liquidation", t)
        for o in self.resting(market["symbol"]):  # the venue cancels the position's reduce-only orders
            if o.reduce_only:
                self._end(o, market, "canceled", "position liquidated", t)

    # -- internals -----------------------------------------------------------------------------------------
    def _register(self, order: Order) -> None:
        self.orders[order.id] = order
        if order.client_order_id is not None:
            self.client_ids[order.client_order_id] = order.id

    def _fillable(self, order: Order, amount: float) -> float:
        """A reduce-only order never fills beyond the position left to reduce."""
        if not order.reduce_only:
            return amount
        pos = self.account.positions.get(order.symbol)
        if pos is None or not pos.contracts or (pos.contracts > 0) == (order.side == "buy"):
            return 0.0
        return min(amount, abs(pos.contracts))

    def _execute(
        self,
        order: Order,
        market: Mapping[str, Any],
        book: Book | None,
        fills: list[tuple[float, float]],
        t: int,
        taker: bool,
    ) -> None:
        if not fills:
            return
        if book is not None:
            self._consume(order.symbol, book, order.side, fills)
        rate = self.fee_rate(market, taker)
        size = float(market.get("contractSize") or 1.0)
        for price, amount in fills:
            fee_cost = price * amount * size * rate
            self.account.fill(market, order.side, amount, price, fee_cost, t)
            trade = self._trade(order, market, price, amount, fee_cost, rate, t, taker)
            order.trades.append(trade)
            order.filled += amount
            order.cost += price * amount * size
            order.fee_cost += fee_cost
        order.last_trade_ms = order.updated_ms = t

    def _trade(
        self,
        order: Order,
        market: Mapping[str, Any],
        price: float,
        amount: float,
        fee_cost: float,
        rate: float,
        t: int,
        taker: bool,
    ) -> dict[str, Any]:
        trade_id = str(next(self._trade_ids))
        trade = structures.trade(
            trade_id=trade_id,
            order_id=order.id,
            t=t,
            market=market,
            order_type=order.type,
            side=order.side,
            taker_or_maker="taker" if taker else "maker",
            price=price,
            amount=amount,
            fee_cost=fee_cost,
            fee_rate=rate,
            fee_currency=order.fee_currency,
            info={"orderId": order.id, "clientOrderId": order.client_order_id, "tradeId": trade_id},
        )
        self.trades.append(trade)
        self.events.append(("trade", trade))
        return trade

    def _end(self, order: Order, market: Mapping[str, Any], status: str, reason: str | None, t: int) -> None:
        order.status, order.reason, order.updated_ms = status, reason, t
        self.account.release(order.id)
        self._log_order(order, market)

    def _log_order(self, order: Order, market: Mapping[str, Any]) -> None:
        self.events.append(("order", order.to_ccxt(market)))
