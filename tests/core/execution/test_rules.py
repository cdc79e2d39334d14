"""Venue rules and errors: each venue's error payload raises, through the real ccxt class, what ccxt raises."""

from __future__ import annotations

import ccxt
import pytest

from fundarb_dagster.core.execution.rules import (
    REJECTS,
    amount_to_precision,
    price_to_precision,
    venue_error,
    venue_payload,
)
from fundarb_dagster.core.sources.markets import market_for

# What ccxt 4.5's error maps say for each venue's code or message (read from ccxt's sources, written here).
EXPECTED = {
    ("binance", "duplicate_client_order_id"): ccxt.InvalidOrder,
    ("binance", "reduce_only"): ccxt.InvalidOrder,
    ("binance", "insufficient_margin"): ccxt.InsufficientFunds,
    ("binance", "min_notional"): ccxt.InvalidOrder,
    ("binance", "post_only"): ccxt.OrderNotFillable,
    ("binance", "leverage"): ccxt.BadRequest,
    ("binance", "position_limit"): ccxt.OperationRejected,
    ("binance", "order_not_found"): ccxt.OrderNotFound,
    ("binance", "busy"): ccxt.OperationFailed,
    ("bybit", "duplicate_client_order_id"): ccxt.InvalidOrder,
    ("bybit", "insufficient_margin"): ccxt.InsufficientFunds,
    ("bybit", "order_not_found"): ccxt.OrderNotFound,
    ("okx", "duplicate_client_order_id"): ccxt.InvalidOrder,
    ("okx", "insufficient_margin"): ccxt.InsufficientFunds,
    ("okx", "order_not_found"): ccxt.OrderNotFound,
    ("okx", "busy"): ccxt.ExchangeNotAvailable,
    ("hyperliquid", "insufficient_margin"): ccxt.InsufficientFunds,
    ("hyperliquid", "reduce_only"): ccxt.InvalidOrder,
    ("hyperliquid", "order_not_found"): ccxt.OrderNotFound,
}


@pytest.mark.parametrize(("venue", "reason"), sorted(EXPECTED))
def test_a_venue_error_is_what_ccxt_raises_for_the_venue_payload(venue: str, reason: str) -> None:
    error = venue_error(venue, reason, min="5", bbo="1", leverage="200")
    assert type(error) is EXPECTED[(venue, reason)]
    code, message = REJECTS[reason][venue]
    assert message.split("{")[0] in str(error)


def test_every_reject_row_maps_to_a_ccxt_error_and_unknown_venues_fall_back() -> None:
    for reason, rows in REJECTS.items():
        for key in rows:
            venue, _, kind = key.partition(":")
            assert isinstance(
                venue_error(venue, reason, spot=kind == "spot", min="5", bbo="1", leverage="2"), ccxt.BaseError
            )
    assert venue_payload("binance", "busy") == {"code": -1008, "msg": REJECTS["busy"]["binance"][1]}
    assert type(venue_error("kraken", "insufficient_margin")) is ccxt.InsufficientFunds
    assert type(venue_error("binance", "insufficient_margin", spot=True)) is ccxt.InsufficientFunds


def test_amounts_truncate_and_prices_round_to_the_market_precision() -> None:
    market = market_for(
        "BTC/USDT:USDT",
        precision={"amount": 0.001, "price": 0.1},
        limits={"amount": {"min": 0.001, "max": None}, "cost": {"min": 5.0, "max": None}},
    )
    assert amount_to_precision(market, 0.0129) == 0.012  # truncated, as ccxt does before sending
    assert price_to_precision(market, 60_000.06) == 60_000.1
    with pytest.raises(ccxt.InvalidOrder, match="minimum amount precision"):
        amount_to_precision(market, 0.0009)
    with pytest.raises(ccxt.InvalidOrder, match="price"):
        price_to_precision(market, -1.0)
