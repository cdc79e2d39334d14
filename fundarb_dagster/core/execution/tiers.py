"""Leverage tiers (maintenance margin by position notional) and isolated-margin liquidation, as venues run them.

A venue's tiers are ccxt's leverage-tier structures (`fetch_market_leverage_tiers`), ascending by notional:

    {"tier": 1, "symbol": "BTC/USDT:USDT", "currency": "USDT", "minNotional": 0, "maxNotional": 50000,
     "maintenanceMarginRate": 0.004, "maxLeverage": 125, "info": {"cum": 0.0, ...}}

The maintenance margin of a position of notional N in tier k is `N x mmr_k - cum_k`, where the maintenance
amount `cum_k = cum_{k-1} + minNotional_k x (mmr_k - mmr_{k-1})` keeps it continuous across tier edges
(binance's `cum`, bybit's `mmDeduction`); `maintenance_amounts` derives it from the unified fields, so it
holds for any venue's tiers. Isolated, one-way, linear: a position of Q base units (s = +1 long, -1 short)
with entry price E and margin M is liquidated when its equity `M + s Q (mark - E)` falls to the
maintenance margin, i.e. at

    liquidation_price = (M + cum - s Q E) / (Q mmr - s Q)

`TIER_SCHEDULES` models each simulated venue's published schedule (majors and the rest; base tier equal to
the venue row's `maintenance_margin_rate`): the simulator serves them through `fetch_leverage_tiers`, and a
paper venue uses them where its source has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..instruments import split_multiplier

MAJORS: Final = ("BTC", "ETH")


@dataclass(frozen=True)
class Tier:
    """One bracket of a schedule: notional up to `max_notional` (USD), at most `max_leverage`, rate `mmr`."""

    max_notional: float
    max_leverage: float
    mmr: float


def _schedule(*rows: tuple[float, float, float]) -> tuple[Tier, ...]:
    return tuple(Tier(*row) for row in rows)


# venue -> class ("major": BTC and ETH, "alt": the rest) -> brackets. Shapes and levels follow each venue's
# published USDT-perp brackets in 2025-2026 (binance BTCUSDT, bybit risk limits, okx tiers, hyperliquid
# margin tables); the simulator's, not a copy of any one day's.
TIER_SCHEDULES: Final[dict[str, dict[str, tuple[Tier, ...]]]] = {
    "binance": {
        "major": _schedule(
            (50_000, 125, 0.004),
            (600_000, 100, 0.005),
            (3_000_000, 75, 0.0065),
            (12_000_000, 50, 0.01),
            (70_000_000, 25, 0.02),
            (100_000_000, 20, 0.025),
            (230_000_000, 10, 0.05),
            (480_000_000, 5, 0.1),
            (600_000_000, 4, 0.125),
            (800_000_000, 3, 0.15),
            (1_200_000_000, 2, 0.25),
            (1_800_000_000, 1, 0.5),
        ),
        "alt": _schedule(
            (10_000, 75, 0.0065),
            (50_000, 50, 0.01),
            (250_000, 25, 0.02),
            (1_000_000, 20, 0.025),
            (2_000_000, 10, 0.05),
            (5_000_000, 5, 0.1),
            (10_000_000, 4, 0.125),
            (20_000_000, 3, 0.15),
            (40_000_000, 2, 0.25),
            (60_000_000, 1, 0.5),
        ),
    },
    "bybit": {
        "major": _schedule(
            (2_000_000, 100, 0.005),
            (10_000_000, 50, 0.01),
            (20_000_000, 25, 0.02),
            (40_000_000, 12.5, 0.04),
            (80_000_000, 10, 0.05),
            (160_000_000, 5, 0.1),
            (300_000_000, 2, 0.25),
            (600_000_000, 1, 0.5),
        ),
        "alt": _schedule(
            (200_000, 50, 0.01),
            (1_000_000, 25, 0.02),
            (3_000_000, 12.5, 0.04),
            (6_000_000, 10, 0.05),
            (12_000_000, 5, 0.1),
            (30_000_000, 2, 0.25),
            (60_000_000, 1, 0.5),
        ),
    },
    "okx": {
        "major": _schedule(
            (1_000_000, 100, 0.004),
            (5_000_000, 75, 0.005),
            (10_000_000, 50, 0.008),
            (20_000_000, 25, 0.015),
            (50_000_000, 20, 0.02),
            (100_000_000, 10, 0.04),
            (200_000_000, 5, 0.08),
            (400_000_000, 3, 0.12),
            (800_000_000, 2, 0.2),
            (1_600_000_000, 1, 0.4),
        ),
        "alt": _schedule(
            (100_000, 50, 0.01),
            (500_000, 20, 0.02),
            (2_000_000, 10, 0.04),
            (5_000_000, 5, 0.08),
            (10_000_000, 3, 0.12),
            (20_000_000, 2, 0.2),
            (50_000_000, 1, 0.4),
        ),
    },
    # hyperliquid: maintenance = half the initial margin at the tier's max leverage
    "hyperliquid": {
        "major": _schedule((150_000_000, 40, 0.0125), (500_000_000, 20, 0.025)),
        "alt": _schedule((20_000_000, 20, 0.025), (100_000_000, 10, 0.05)),
    },
}


def schedule_for(venue: str, base: str) -> tuple[Tier, ...] | None:
    """The modelled brackets of a venue's perp on `base` (a `1000PEPE` base is PEPE's), None if not modelled."""
    by_class = TIER_SCHEDULES.get(venue)
    if by_class is None:
        return None
    asset, _ = split_multiplier(base)
    return by_class["major" if asset in MAJORS else "alt"]


def tier_structures(schedule: Sequence[Tier], symbol: str, currency: str, market_id: str) -> list[dict[str, Any]]:
    """ccxt's leverage-tier structures for a schedule (binance's bracket fields, with `cum`, in `info`)."""
    amounts = maintenance_amounts([(t.max_notional, t.mmr) for t in schedule])
    out: list[dict[str, Any]] = []
    floor = 0.0
    for k, (tier, cum) in enumerate(zip(schedule, amounts, strict=True), start=1):
        info = {
            "symbol": market_id,
            "bracket": k,
            "initialLeverage": tier.max_leverage,
            "notionalCap": tier.max_notional,
            "notionalFloor": floor,
            "maintMarginRatio": tier.mmr,
            "cum": cum,
        }
        out.append(
            {
                "tier": float(k),
                "symbol": symbol,
                "currency": currency,
                "minNotional": floor,
                "maxNotional": float(tier.max_notional),
                "maintenanceMarginRate": tier.mmr,
                "maxLeverage": float(tier.max_leverage),
                "info": info,
            }
        )
        floor = float(tier.max_notional)
    return out


def maintenance_amounts(brackets: Sequence[tuple[float, float]]) -> list[float]:
    """The maintenance amount of each tier from its (max notional, mmr), ascending: tier k starts where
    tier k-1 ends, and `cum_k = cum_{k-1} + floor_k x (mmr_k - mmr_{k-1})`."""
    out: list[float] = []
    cum, prev_mmr, prev_cap = 0.0, None, 0.0
    for cap, mmr in brackets:
        if prev_mmr is not None:
            cum += prev_cap * (mmr - prev_mmr)
        out.append(round(cum, 8))
        prev_mmr, prev_cap = mmr, cap
    return out


def tier_at(tiers: Sequence[Mapping[str, Any]], notional: float) -> tuple[Mapping[str, Any], float]:
    """The tier a position of `notional` falls in (the last one past the top) and its maintenance amount."""
    if not tiers:
        raise ValueError("tiers: empty; a venue's leverage tiers are needed")
    amounts = maintenance_amounts([(float(t["maxNotional"]), float(t["maintenanceMarginRate"])) for t in tiers])
    for tier, cum in zip(tiers, amounts, strict=True):
        if abs(notional) <= float(tier["maxNotional"]):
            return tier, cum
    return tiers[-1], amounts[-1]


def max_leverage(tiers: Sequence[Mapping[str, Any]]) -> float:
    return max(float(t["maxLeverage"]) for t in tiers)


def max_notional_at(tiers: Sequence[Mapping[str, Any]], leverage: float) -> float:
    """The largest position notional allowed at a leverage: the top of the last tier that allows it."""
    allowed = [float(t["maxNotional"]) for t in tiers if float(t["maxLeverage"]) >= leverage]
    return max(allowed) if allowed else 0.0


def maintenance_margin(tiers: Sequence[Mapping[str, Any]], notional: float) -> float:
    """`|N| x mmr - cum` of the tier |N| falls in."""
    tier, cum = tier_at(tiers, notional)
    return abs(notional) * float(tier["maintenanceMarginRate"]) - cum


def liquidation_price(
    tiers: Sequence[Mapping[str, Any]], side: int, base_amount: float, entry: float, margin: float, mark: float
) -> float:
    """Isolated liquidation price of a linear position (see the module doc); the tier is the one the
    position's notional at `mark` falls in. 0 when a long cannot be liquidated (margin beyond its value)."""
    if base_amount <= 0:
        raise ValueError(f"base_amount: {base_amount!r} must be > 0")
    tier, cum = tier_at(tiers, base_amount * mark)
    mmr = float(tier["maintenanceMarginRate"])
    price = (margin + cum - side * base_amount * entry) / (base_amount * mmr - side * base_amount)
    return max(price, 0.0)
