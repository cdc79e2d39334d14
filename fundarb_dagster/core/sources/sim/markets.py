"""A simulated market: its parameters (`Market`), its ccxt market structure, and one hour of its data (`Chunk`).

Units like the venue: prices per ccxt base (a `1000PEPE` price is 1000 PEPE); amounts, volumes and ticker
sizes in base units except okx swaps, which count contracts (`contractSize`: BTC 0.01, ETH 0.1, PEPE 1e7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...execution.tiers import schedule_for
from ...instruments import split_multiplier
from ..markets import market_for
from .venues import ASSET_INDEX, ASSETS, VenueSpec

TRADE_ID_HOUR = 10_000_000  # trade id = absolute hour * this + k


def _max_leverage(spec: VenueSpec, base: str) -> float:
    """The top leverage of the perp's tiers (`execution.tiers`), what ccxt's `limits.leverage.max` says."""
    schedule = schedule_for(spec.id, base)
    return max(t.max_leverage for t in schedule) if schedule else 1.0


@dataclass(frozen=True)
class Market:
    symbol: str
    id: str  # ccxt's market id
    venue: VenueSpec
    asset: str
    a: int
    swap: bool
    multiplier: float  # price units per asset unit (1000 for 1000PEPE)
    contract_size: float  # base units per amount unit (okx swaps count contracts)
    tick: float
    decimals: int
    lot: float
    lot_decimals: int
    half_spread: float  # fraction
    key: int  # stable small number for random streams: venue, asset, spot/swap


@dataclass
class Chunk:
    """One hour of one market: per-second book, trades and the final 1-minute candles."""

    start_ms: int
    mid: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    index: np.ndarray
    mark: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    side: np.ndarray
    draws: np.ndarray | None  # (N, 3) uniforms: malformed, duplicate, out-of-order (made when faults are on)
    bad_kind: np.ndarray | None
    cum: np.ndarray  # cumulative amount, N + 1
    minute_idx: np.ndarray  # 61 trade offsets of the minute boundaries
    candles: list[list[float]]


def build_market(
    spec: VenueSpec, asset: str, swap: bool, funding_info: Mapping[str, Any] | None = None
) -> tuple[Market, dict[str, Any]]:
    """An asset's spot or perp market on a venue: its `Market` and its ccxt market structure.

    `funding_info` (perps): the funding fields of the market's `info` (interval, its history, cap, formula).
    """
    a = ASSET_INDEX[asset]
    base = spec.perp_base(asset) if swap else asset
    quote = spec.quote
    symbol = f"{base}/{quote}:{quote}" if swap else f"{base}/{quote}"
    _, multiplier = split_multiplier(base)
    contract_size = float(spec.contract_sizes.get(asset, 1.0)) if swap else 1.0
    price0 = ASSETS[asset].price * multiplier
    decimals = 5 - math.floor(math.log10(price0))
    typical = ASSETS[asset].notional / (price0 * contract_size)
    lot_decimals = 2 - math.floor(math.log10(typical))
    half_spread = ASSETS[asset].spread_bps * spec.spread_mult * (1.3 if swap else 1.0) / 2e4
    market_id = spec.market_id(base, swap, asset)
    market = Market(
        symbol=symbol,
        id=market_id,
        venue=spec,
        asset=asset,
        a=a,
        swap=swap,
        multiplier=multiplier,
        contract_size=contract_size,
        tick=10.0**-decimals,
        decimals=decimals,
        lot=10.0**-lot_decimals,
        lot_decimals=lot_decimals,
        half_spread=half_spread,
        key=spec.index * 1000 + a * 2 + int(swap),
    )
    info: dict[str, Any] = {"symbol": market_id, "simAsset": asset, "status": "TRADING"}
    if swap:
        info.update(funding_info or {})
    structure = market_for(
        symbol,
        market_id,
        contract_size,
        precision={"amount": 10.0**-lot_decimals, "price": 10.0**-decimals},
        limits={
            "amount": {"min": 10.0**-lot_decimals, "max": None},
            "price": {"min": 10.0**-decimals, "max": None},
            "cost": {"min": spec.min_notional or None, "max": None},
            "leverage": {"min": 1.0, "max": _max_leverage(spec, base) if swap else 1.0},
        },
        info=info,
        expiryDatetime=None,
        strike=None,
        optionType=None,
        taker=spec.facts.fees_bps.taker("perp" if swap else "spot") / 1e4,
        maker=spec.facts.fees_bps.maker("perp" if swap else "spot") / 1e4,
        created=None,
    )
    return market, structure
