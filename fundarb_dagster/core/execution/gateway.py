"""The trader's way to its venues: one ccxt(.pro)-shaped exchange object per venue (`protocol.PrivateVenue`: the
simulator, a `fundarb sim-venue` proxy, a paper venue, a live ccxt.pro object; tests/core/execution/
test_conformance.py runs one scenario through each), spoken to only through ccxt's unified private API.

It converts between the trader's units (signed base quantities) and the venue's (contracts where the venue
counts them), sends orders with their client id, and sorts ccxt's errors into what they mean for an order:

- `Sent`: the venue answered with the order (its id, status, fill so far);
- `Unknown`: the request may or may not have reached the venue (`ccxt.NetworkError`, incl. `RequestTimeout`),
  or the venue calls the id a duplicate: the order is looked up by client id before anything is sent again;
- `Refused`: the venue refused it (any other `ccxt.ExchangeError`): nothing was placed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import ccxt

from ..backtest.accounting import annualize
from .machine import LegOrder
from .protocol import PrivateVenue
from .sizing import LegMarket

Key = tuple[str, str]  # (exchange, symbol)


@dataclass(frozen=True)
class OrderState:
    """What the venue says of one order, in base units."""

    client_id: str
    order_id: str
    status: str  # ccxt: open, closed, canceled, expired, rejected
    filled: float
    average: float
    fee_usd: float
    ts_ms: int


@dataclass(frozen=True)
class Sent:
    state: OrderState


@dataclass(frozen=True)
class Unknown:
    reason: str


@dataclass(frozen=True)
class Refused:
    reason: str


SendResult = Sent | Unknown | Refused


def _num(value: Any, default: float = math.nan) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def error_reason(exc: BaseException) -> str:
    """`ccxt:<Error>: <first words>`: a short reason for the orders stream (never a credential)."""
    first = str(exc).splitlines()[0][:40] if str(exc) else ""
    return f"ccxt:{type(exc).__name__}" + (f": {first}" if first else "")


class Gateway:
    """Exchange objects by venue id, the legs' markets, and the private calls in base units."""

    def __init__(self, exchanges: Mapping[str, PrivateVenue]) -> None:
        self.exchanges = dict(exchanges)
        self.legs: dict[Key, LegMarket] = {}

    @property
    def clock(self) -> Any:
        """The exchange whose clock the trader reads (they share one: the simulator's venues are built so)."""
        return next(iter(self.exchanges.values()))

    def milliseconds(self) -> int:
        return int(self.clock.milliseconds())

    async def load(self, symbols: Mapping[str, tuple[str, ...]]) -> dict[Key, LegMarket]:
        """Load markets and keep the legs the trader may trade; a symbol the venue does not list is an error."""
        for exchange_id, wanted in symbols.items():
            ex = self.exchanges[exchange_id]
            markets = await ex.load_markets()
            for symbol in wanted:
                if symbol not in markets:
                    raise ValueError(f"trade: {symbol!r} is not listed by {exchange_id!r}")
                self.legs[(exchange_id, symbol)] = LegMarket.of(exchange_id, markets[symbol])
        return self.legs

    def leg(self, key: Key) -> LegMarket:
        return self.legs[key]

    async def prepare(self, leverage: float) -> list[str]:
        """Isolated margin at the trader's leverage on every perp leg (the backtest's margin model); returns what
        a venue refused (said, not fatal: it keeps its own setting, which the risk check then sees)."""
        refused = []
        # venues take a whole leverage as an integer (binance refuses `leverage=3.0`)
        leverage = int(leverage) if float(leverage).is_integer() else float(leverage)
        for (exchange_id, symbol), leg in self.legs.items():
            if leg.kind != "perp":
                continue
            ex = self.exchanges[exchange_id]
            for call, args in (("set_margin_mode", ("isolated", symbol)), ("set_leverage", (leverage, symbol))):
                try:
                    await getattr(ex, call)(*args)
                except ccxt.BaseError as exc:
                    refused.append(f"{exchange_id} {symbol} {call}: {error_reason(exc)}")
        return refused

    # -- market data the decision needs ---------------------------------------------------------------
    async def mid(self, key: Key) -> float:
        ticker = await self.exchanges[key[0]].fetch_ticker(key[1])
        bid, ask = _num(ticker.get("bid")), _num(ticker.get("ask"))
        if math.isfinite(bid) and math.isfinite(ask) and bid > 0 and ask > 0:
            return (bid + ask) / 2
        return _num(ticker.get("last"))

    async def funding_apr(self, key: Key) -> float:
        """The perp's current (predicted) funding rate, annualised with the interval in force (NaN unknown)."""
        structure = await self.exchanges[key[0]].fetch_funding_rate(key[1])
        rate = _num(structure.get("fundingRate"))
        interval = structure.get("interval")
        hours = _num(str(interval)[:-1]) if isinstance(interval, str) and interval.endswith("h") else math.nan
        if not math.isfinite(hours):
            hours = _num((structure.get("info") or {}).get("fundingIntervalHours"))
        return float(annualize(rate, hours)) if math.isfinite(hours) and hours > 0 else math.nan

    # -- orders ------------------------------------------------------------------------------------------
    def state(self, key: Key, order: Mapping[str, Any]) -> OrderState:
        leg = self.legs[key]
        fee = order.get("fee") or {}
        fee_usd = _num(fee.get("cost"), 0.0)
        if fee.get("currency") == leg.base:
            fee_usd *= _num(order.get("average"), 0.0)
        return OrderState(
            client_id=str(order.get("clientOrderId") or ""),
            order_id=str(order.get("id") or ""),
            status=str(order.get("status") or "open"),
            filled=leg.to_base(_num(order.get("filled"), 0.0)),
            average=_num(order.get("average")),
            fee_usd=fee_usd,
            ts_ms=int(order.get("lastUpdateTimestamp") or order.get("timestamp") or 0),
        )

    async def send(self, key: Key, order: LegOrder) -> SendResult:
        leg = self.legs[key]
        params: dict[str, Any] = {"clientOrderId": order.client_id}
        if order.reduce_only and leg.kind == "perp":
            params["reduceOnly"] = True
        side = "buy" if order.side > 0 else "sell"
        try:
            answer = await self.exchanges[key[0]].create_order(
                key[1], "market", side, leg.to_venue(order.amount), None, params
            )
        except ccxt.DuplicateOrderId as exc:
            return Unknown(error_reason(exc))
        except ccxt.NetworkError as exc:
            return Unknown(error_reason(exc))
        except ccxt.BaseError as exc:
            return Refused(error_reason(exc))
        state = self.state(key, answer)
        return Sent(state if state.client_id else replace(state, client_id=order.client_id))

    async def lookup(self, key: Key, client_id: str, order_id: str = "") -> OrderState | None:
        """The order by venue id, else by client id; None when the venue has no such order."""
        ex = self.exchanges[key[0]]
        try:
            if order_id:
                found = await ex.fetch_order(order_id, key[1])
            else:
                found = await ex.fetch_order(None, key[1], {"clientOrderId": client_id})
        except ccxt.OrderNotFound:
            return None
        state = self.state(key, found)
        return state if state.client_id else replace(state, client_id=client_id)

    async def cancel(self, key: Key, client_id: str, order_id: str = "") -> None:
        """Ask the venue to cancel; an order already final is not an error (the next lookup says what it is)."""
        ex = self.exchanges[key[0]]
        try:
            if order_id:
                await ex.cancel_order(order_id, key[1])
            else:
                await ex.cancel_order(None, key[1], {"clientOrderId": client_id})
        except (ccxt.OrderNotFound, ccxt.InvalidOrder):
            return

    async def my_trades(self, key: Key, since: int | None) -> list[dict[str, Any]]:
        return list(await self.exchanges[key[0]].fetch_my_trades(key[1], since))

    async def open_orders(self, key: Key) -> list[dict[str, Any]]:
        return list(await self.exchanges[key[0]].fetch_open_orders(key[1]))

    # -- account -----------------------------------------------------------------------------------------
    async def positions(self, exchange_id: str, symbols: list[str]) -> dict[Key, dict[str, Any]]:
        found = await self.exchanges[exchange_id].fetch_positions(symbols)
        return {(exchange_id, p["symbol"]): p for p in found if p.get("symbol") in symbols}

    def position_units(self, key: Key, position: Mapping[str, Any] | None) -> float:
        """A ccxt position structure -> signed base units (contracts x contract size; short negative)."""
        if not position:
            return 0.0
        contracts = _num(position.get("contracts"), 0.0)
        sign = -1.0 if position.get("side") == "short" else 1.0
        return sign * abs(self.legs[key].to_base(contracts))

    async def balance(self, exchange_id: str) -> dict[str, Any]:
        return dict(await self.exchanges[exchange_id].fetch_balance())

    async def funding_history(self, key: Key, since: int | None) -> list[dict[str, Any]]:
        return list(await self.exchanges[key[0]].fetch_funding_history(key[1], since))

    async def close(self) -> None:
        for ex in self.exchanges.values():
            close = getattr(ex, "close", None)
            if close is not None:
                await close()
