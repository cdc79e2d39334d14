"""Venue rules for an order (precision, minimum size and notional) and the errors a venue answers with.

A rejected order raises exactly what ccxt raises for the real venue: the venue's own error payload (code and
message as the venue sends them) goes through the real ccxt class's `handle_errors`, so a duplicate
`clientOrderId` is `ccxt.InvalidOrder` on binance (-4116) and bybit (110072), an insufficient margin
`ccxt.InsufficientFunds`, an unknown order `ccxt.OrderNotFound`, and so on, with ccxt's message. A venue
without a row in `REJECTS` gets the ccxt class in `FALLBACK`.

Rules read the market structure (`precision`, `limits`), as ccxt does: amounts are truncated and prices
rounded to the market's precision (ccxt's `decimal_to_precision`, precision given as tick sizes), an amount
below the minimum is refused before anything is sent (ccxt's own client-side check), a notional below
`limits.cost.min` is refused by the venue unless the order only reduces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final

import ccxt
from ccxt.base.decimal_to_precision import ROUND, TICK_SIZE, TRUNCATE, decimal_to_precision

# reason -> venue -> (venue code, venue message); spot variants under "<venue>:spot"
REJECTS: Final[dict[str, dict[str, tuple[Any, str]]]] = {
    "duplicate_client_order_id": {
        "binance": (-4116, "ClientOrderId is duplicated."),
        "binance:spot": (-2010, "Duplicate order sent."),
        "bybit": (110072, "OrderLinkedID is duplicate"),
        "okx": ("51016", "Duplicated clOrdId"),
        "hyperliquid": (None, "Order has duplicate cloid."),
    },
    "reduce_only": {
        "binance": (-2022, "ReduceOnly Order is rejected."),
        "bybit": (110017, "Reduce-only rule not satisfied"),
        "okx": ("51169", "Order failed because you don't have any positions in this direction to reduce or close."),
        "hyperliquid": (None, "Reduce only order would increase position."),
    },
    "insufficient_margin": {
        "binance": (-2019, "Margin is insufficient."),
        "binance:spot": (-2010, "Account has insufficient balance for requested action."),
        "bybit": (110007, "ab not enough for new order"),
        "okx": ("51008", "Order failed. Insufficient balance or margin in account"),
        "hyperliquid": (None, "Insufficient margin to place order."),
        "hyperliquid:spot": (None, "Insufficient spot balance asset"),
    },
    "min_notional": {
        "binance": (-4164, "Order's notional must be no smaller than {min} (unless you choose reduce only)."),
        "binance:spot": (-1013, "Filter failure: NOTIONAL"),
        "bybit": (110094, "Order does not meet minimum order value"),
        "okx": ("51020", "Order amount should be greater than the min available amount"),
        "hyperliquid": (None, "Order must have minimum value of ${min}."),
    },
    "post_only": {  # venues in POST_ONLY_CANCELS cancel such an order instead of refusing it
        "binance": (-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected."),
        "hyperliquid": (None, "Post only order would have immediately matched, bbo was {bbo}."),
    },
    "leverage": {
        "binance": (-4028, "Leverage {leverage} is not valid"),
        "bybit": (110013, "cannot set leverage due to risk limit"),
        "okx": ("59102", "Leverage exceeds the maximum leverage"),
        "hyperliquid": (None, "Invalid leverage value"),
    },
    "position_limit": {
        "binance": (-2027, "Exceeded the maximum allowable position at current leverage."),
        "bybit": (110090, "position will exceed max position"),
        "okx": ("51004", "Order amount exceeds current tier limit"),
        "hyperliquid": (None, "Insufficient margin to place order."),
    },
    "order_not_found": {
        "binance": (-2013, "Order does not exist."),
        "bybit": (110001, "order not exists or too late to cancel"),
        "okx": ("51603", "Order does not exist"),
        "hyperliquid": (None, "Order was never placed, already canceled, or filled."),
    },
    "busy": {  # the injected reject fault: the venue refuses the request, no order is created
        "binance": (-1008, "Server is currently overloaded with other requests. Please try again in a few minutes."),
        "bybit": (10016, "System error. Please try again later."),
        "okx": ("50013", "System is busy, please try again later"),
        "hyperliquid": (None, "Server busy, please try again later."),
    },
}
POST_ONLY_CANCELS: Final = ("bybit", "okx")  # a crossing post-only order is accepted, then canceled
FALLBACK: Final[dict[str, type[ccxt.BaseError]]] = {
    "duplicate_client_order_id": ccxt.InvalidOrder,
    "reduce_only": ccxt.InvalidOrder,
    "insufficient_margin": ccxt.InsufficientFunds,
    "min_notional": ccxt.InvalidOrder,
    "post_only": ccxt.OrderImmediatelyFillable,
    "leverage": ccxt.BadRequest,
    "position_limit": ccxt.InvalidOrder,
    "order_not_found": ccxt.OrderNotFound,
    "busy": ccxt.ExchangeNotAvailable,
}

# the URL each venue's order endpoint has (binance's error map depends on it), spot and contract
_URLS: Final[dict[str, tuple[str, str]]] = {
    "binance": ("https://api.binance.com/api/v3/order", "https://fapi.binance.com/fapi/v1/order"),
    "bybit": ("https://api.bybit.com/v5/order/create", "https://api.bybit.com/v5/order/create"),
    "okx": ("https://www.okx.com/api/v5/trade/order", "https://www.okx.com/api/v5/trade/order"),
    "hyperliquid": ("https://api.hyperliquid.xyz/exchange", "https://api.hyperliquid.xyz/exchange"),
}
_PAYLOADS: Final[dict[str, Callable[[Any, str], dict[str, Any]]]] = {
    "binance": lambda code, msg: {"code": code, "msg": msg},
    "bybit": lambda code, msg: {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}},
    "okx": lambda code, msg: {
        "code": "1",
        "msg": "All operations failed",
        "data": [{"clOrdId": "", "ordId": "", "sCode": code, "sMsg": msg, "tag": ""}],
    },
    "hyperliquid": lambda code, msg: {
        "status": "ok",
        "response": {"type": "order", "data": {"statuses": [{"error": msg}]}},
    },
}


@cache
def _ccxt_class_instance(venue: str) -> Any:
    return getattr(ccxt, venue)()  # sync class, never used for I/O: only its error mapping


def venue_payload(venue: str, reason: str, spot: bool = False, **details: Any) -> dict[str, Any] | None:
    """The venue's error body for a reason (None for a venue or reason without one)."""
    rows = REJECTS.get(reason, {})
    row = rows.get(f"{venue}:spot") if spot else None
    row = row or rows.get(venue)
    if row is None or venue not in _PAYLOADS:
        return None
    code, message = row
    return _PAYLOADS[venue](code, message.format(**details) if details else message)


def venue_error(venue: str, reason: str, spot: bool = False, **details: Any) -> ccxt.BaseError:
    """The exception ccxt raises when the venue answers with its error for `reason` (see the module doc)."""
    payload = venue_payload(venue, reason, spot, **details)
    if payload is None:
        detail = ", ".join(f"{k}={v}" for k, v in details.items())
        return FALLBACK[reason](f"{venue} {reason}" + (f": {detail}" if detail else ""))
    body = json.dumps(payload)
    url = _URLS[venue][0 if spot else 1]
    try:
        _ccxt_class_instance(venue).handle_errors(400, "Bad Request", url, "POST", {}, body, payload, {}, None)
    except ccxt.BaseError as error:
        return error
    return ccxt.ExchangeError(f"{venue} {body}")  # pragma: no cover - every payload above maps to an error


# -- precision and limits ---------------------------------------------------------------------------------
def amount_to_precision(market: Mapping[str, Any], amount: float) -> float:
    """The amount truncated to the market's amount step (ccxt's rule); refuses one that truncates to nothing."""
    step = (market.get("precision") or {}).get("amount")
    value = float(amount)
    if step:
        value = float(decimal_to_precision(value, TRUNCATE, step, TICK_SIZE))
    minimum = ((market.get("limits") or {}).get("amount") or {}).get("min")
    if value <= 0 or (minimum is not None and value < float(minimum)):
        raise ccxt.InvalidOrder(
            f"amount: {amount!r} of {market['symbol']} must be greater than minimum amount precision of "
            f"{step if step else minimum}"
        )
    return value


def price_to_precision(market: Mapping[str, Any], price: float) -> float:
    """The price rounded to the market's tick (ccxt's rule)."""
    step = (market.get("precision") or {}).get("price")
    value = float(price)
    if value <= 0:
        raise ccxt.InvalidOrder(f"price: {price!r} of {market['symbol']} must be > 0")
    return float(decimal_to_precision(value, ROUND, step, TICK_SIZE)) if step else value


def min_notional(market: Mapping[str, Any]) -> float | None:
    value = ((market.get("limits") or {}).get("cost") or {}).get("min")
    return None if value is None else float(value)
