"""ccxt unified market dicts built offline: one builder for every source that has no venue to load them from.

The simulator and the replays (recorded rows, wire sessions without a markets line, REST responses) hand the
Feed and the registry the same structure a live `load_markets()` returns; `market_for` builds it from a
unified symbol (`BTC/USDT` spot, `BTC/USDT:USDT` linear swap, `BTC/USD:BTC` inverse, `BTC/USDT:USDT-240329`
dated future) plus what the caller knows (the venue's id, contract size, precision, limits, fees, `info`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..venues import split_symbol

_LIMITS = ("leverage", "amount", "price", "cost")  # ccxt's limit kinds, each {"min", "max"}


def market_for(
    symbol: str,
    market_id: str | None = None,
    contract_size: float | None = None,
    *,
    expiry_ms: int | None = None,
    precision: Mapping[str, float | None] | None = None,
    limits: Mapping[str, Mapping[str, float | None]] | None = None,
    info: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A ccxt unified market dict for a unified symbol; `market_id` defaults to `BASEQUOTE`.

    Precision and limits not given are None (unknown), as in ccxt's own empty structure; `fields` adds any
    other ccxt market key the caller knows (`taker`, `maker`, `lowercaseId`...).
    """
    base, quote, settle, expiry = split_symbol(symbol)
    contract = settle is not None
    kind = "spot" if not contract else ("future" if expiry else "swap")
    return {
        "id": market_id or f"{base}{quote}",
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle,
        "baseId": base,
        "quoteId": quote,
        "settleId": settle,
        "type": kind,
        "spot": not contract,
        "margin": False,
        "swap": kind == "swap",
        "future": kind == "future",
        "option": False,
        "active": True,
        "contract": contract,
        "linear": (settle == quote) if contract else None,
        "inverse": (settle == base) if contract else None,
        "contractSize": (contract_size or 1.0) if contract else None,
        "expiry": expiry_ms,
        **fields,
        "precision": dict(precision) if precision is not None else {"amount": None, "price": None},
        "limits": dict(limits) if limits is not None else {k: {"min": None, "max": None} for k in _LIMITS},
        "info": dict(info or {}),
    }
