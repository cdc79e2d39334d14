"""ccxt's unified structures, completed by ccxt's own normalisers (`safe_order`, `safe_trade`, `safe_position`,
`safe_balance`, `safe_liquidation` of the base `ccxt.Exchange`), so every venue kind returns what ccxt returns.

The base class is instantiated once and used only for those pure helpers (it opens nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ccxt

UNIFIED: Any = ccxt.Exchange()  # the base class: its safe_* helpers and iso8601, no venue, no I/O


def iso(ms: int | None) -> str | None:
    return None if ms is None else UNIFIED.iso8601(int(ms))


def fee(cost: float, currency: str, rate: float) -> dict[str, Any]:
    """ccxt's fee structure (a negative cost is a rebate)."""
    return {"cost": cost, "currency": currency, "rate": rate}


def trade(
    *,
    trade_id: str,
    order_id: str,
    t: int,
    market: Mapping[str, Any],
    order_type: str,
    side: str,
    taker_or_maker: str,
    price: float,
    amount: float,
    fee_cost: float,
    fee_rate: float,
    fee_currency: str,
    info: dict[str, Any],
) -> dict[str, Any]:
    """ccxt's trade structure of one of the account's fills (`cost` = price x amount x contract size)."""
    size = float(market.get("contractSize") or 1.0)
    return UNIFIED.safe_trade(
        {
            "info": info,
            "id": trade_id,
            "order": order_id,
            "timestamp": t,
            "datetime": iso(t),
            "symbol": market["symbol"],
            "type": order_type,
            "side": side,
            "takerOrMaker": taker_or_maker,
            "price": price,
            "amount": amount,
            "cost": price * amount * size,
            "fee": fee(fee_cost, fee_currency, fee_rate),
            "fees": [fee(fee_cost, fee_currency, fee_rate)],
        },
        market,
    )
