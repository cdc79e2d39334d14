"""ccxt unified market dicts built offline, for the sources that have no venue to load markets from."""

from __future__ import annotations

from typing import Any


def market_for(symbol: str, venue_id: str | None = None, contract_size: float | None = None) -> dict[str, Any]:
    """A minimal ccxt unified market dict for `BASE/QUOTE` (spot) or `BASE/QUOTE:SETTLE` (linear swap)."""
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    if not base or not quote:
        raise ValueError(f"symbol: {symbol!r} is not a ccxt unified symbol like BTC/USDT or BTC/USDT:USDT")
    swap = bool(settle)
    return {
        "id": venue_id or f"{base}{quote}",
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "baseId": base,
        "quoteId": quote,
        "settleId": settle or None,
        "type": "swap" if swap else "spot",
        "spot": not swap,
        "margin": False,
        "swap": swap,
        "future": False,
        "option": False,
        "contract": swap,
        "linear": (settle == quote) if swap else None,
        "inverse": (settle != quote) if swap else None,
        "contractSize": (contract_size or 1.0) if swap else None,
        "active": True,
        "precision": {"amount": None, "price": None},
        "limits": {"amount": {"min": None, "max": None}, "price": {"min": None, "max": None}},
        "info": {},
    }
