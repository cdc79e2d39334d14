"""The simulated universe: the assets, and each venue's simulator parameters beside its shared facts.

A venue's facts (ccxt ids, quote, funding channel, market-id format, fees) are its row in `core/venues.py`;
`VenueSpec` adds what only the simulator needs: which assets it lists, its funding formula and caps, the
interval changes it made, and how its quotes look. `index` and asset order key the random streams: append
only, never renumber.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...venues import VENUE_FACTS, VenueFacts


# -- the universe -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AssetSpec:
    name: str
    price: float  # starting USD price per unit
    vol: float  # annualised volatility
    spread_bps: float  # typical quoted spread
    notional: float  # median trade notional in USD


ASSETS: dict[str, AssetSpec] = {
    a.name: a
    for a in (
        AssetSpec("BTC", 95_000.0, 0.50, 0.2, 4000.0),
        AssetSpec("ETH", 3_400.0, 0.65, 0.3, 3000.0),
        AssetSpec("SOL", 190.0, 0.85, 0.5, 2000.0),
        AssetSpec("XRP", 2.3, 0.80, 0.6, 1500.0),
        AssetSpec("DOGE", 0.32, 0.95, 0.8, 1200.0),
        AssetSpec("ADA", 0.9, 0.85, 0.8, 1000.0),
        AssetSpec("AVAX", 35.0, 0.90, 0.8, 1000.0),
        AssetSpec("LINK", 20.0, 0.85, 0.8, 1000.0),
        AssetSpec("LTC", 100.0, 0.75, 0.8, 1000.0),
        AssetSpec("BNB", 650.0, 0.55, 0.5, 1500.0),
        AssetSpec("SUI", 3.5, 1.00, 1.0, 1000.0),
        AssetSpec("ARB", 0.8, 1.00, 1.0, 800.0),
        AssetSpec("OP", 1.8, 1.00, 1.0, 800.0),
        AssetSpec("APT", 9.0, 0.95, 1.0, 800.0),
        AssetSpec("DOT", 6.5, 0.85, 1.0, 800.0),
        AssetSpec("PEPE", 0.00002, 1.20, 1.5, 800.0),
    )
}
ASSET_NAMES: tuple[str, ...] = tuple(ASSETS)
ASSET_INDEX: dict[str, int] = {name: i for i, name in enumerate(ASSET_NAMES)}
MAJORS = ("BTC", "ETH")


@dataclass(frozen=True)
class IntervalChange:
    """A venue changing a perp's funding interval: settlements after `days_before_start` days before
    floor_day(sim.start) use `interval_h`. The hot regime that made the venue do it runs from 3 days before to
    5 days after the change at premium `regime_premium`."""

    asset: str
    days_before_start: int
    interval_h: float
    regime_premium: float


@dataclass(frozen=True)
class VenueSpec:
    """The simulator's parameters of a venue, beside its shared facts (`core/venues.py`: quote, funding
    channel, market-id format, mark-price stream)."""

    facts: VenueFacts
    index: int  # a stable small number used to key random streams
    spot_assets: tuple[str, ...]
    perp_assets: tuple[str, ...]
    funding_interval_h: float
    funding_style: str  # "clamp" (binance/bybit/okx) or "hyperliquid" (8h rate paid 1/8 hourly)
    premium_average: str  # "weighted" (binance: sample k weighs k) or "mean"
    rate_limit: int  # ccxt's `rateLimit` of the venue's class (ms between requests)
    cap_default: float
    cap_by_asset: Mapping[str, float] = field(default_factory=dict)
    perp_bases: Mapping[str, str] = field(default_factory=dict)  # asset -> ccxt base, e.g. PEPE -> 1000PEPE
    contract_sizes: Mapping[str, float] = field(default_factory=dict)  # perps whose amounts count contracts
    interval_changes: tuple[IntervalChange, ...] = ()
    interest_8h: float = 0.0001
    clamp: float = 0.0005
    spread_mult: float = 1.0
    noise_bps: float = 0.4  # per-second venue noise on the spot mid
    index_market_ids: bool = False  # ccxt ids its markets by asset index (hyperliquid), not as payloads spell them
    order_latency_ms: float = 20.0  # one-way order latency, median (each order draws 0.7x to 1.3x of it)
    min_notional: float = 5.0  # an order's smallest notional in the quote (`limits.cost.min`), unless reduce-only

    @property
    def id(self) -> str:
        return self.facts.id

    @property
    def quote(self) -> str:
        return self.facts.quote

    @property
    def funding_channel(self) -> str:
        """How the real venue streams funding: "mark_price" | "ticker" | "funding_rate"."""
        return self.facts.funding_channel

    def cap(self, asset: str) -> float:
        """The funding cap (per interval) for an asset's perp; the floor is its negative."""
        return float(self.cap_by_asset.get(asset, self.cap_default))

    def perp_base(self, asset: str) -> str:
        return self.perp_bases.get(asset, asset)

    def market_id(self, base: str, swap: bool, asset: str) -> str:
        """ccxt's market id: the venue's spelling (`core/venues.py`), or the asset index where ccxt uses it."""
        if self.index_market_ids:
            return str(ASSET_INDEX[asset]) if swap else str(10_000 + ASSET_INDEX[asset])
        return self.facts.market_id(base, self.quote, self.quote if swap else None, None)


_ALL = ASSET_NAMES
VENUES: dict[str, VenueSpec] = {
    "binance": VenueSpec(
        facts=VENUE_FACTS["binance"],
        index=0,
        spot_assets=_ALL,
        perp_assets=_ALL,
        funding_interval_h=8.0,
        funding_style="clamp",
        premium_average="weighted",
        rate_limit=50,
        cap_default=0.0075,
        cap_by_asset={"BTC": 0.003, "ETH": 0.003},
        perp_bases={"PEPE": "1000PEPE"},
        interval_changes=(IntervalChange("PEPE", 12, 4.0, 0.009),),
    ),
    "bybit": VenueSpec(
        facts=VENUE_FACTS["bybit"],
        index=1,
        spot_assets=_ALL,
        perp_assets=_ALL,
        funding_interval_h=8.0,
        funding_style="clamp",
        premium_average="mean",
        rate_limit=20,
        cap_default=0.0075,
        cap_by_asset={"BTC": 0.00375, "ETH": 0.00375},
        perp_bases={"PEPE": "1000PEPE"},
        interval_changes=(IntervalChange("SUI", 6, 4.0, 0.006),),
        spread_mult=1.2,
        order_latency_ms=25.0,
    ),
    "okx": VenueSpec(
        facts=VENUE_FACTS["okx"],
        index=2,
        spot_assets=_ALL,
        perp_assets=_ALL,
        funding_interval_h=8.0,
        funding_style="clamp",
        premium_average="mean",
        rate_limit=110,
        cap_default=0.015,
        cap_by_asset={"BTC": 0.00375, "ETH": 0.00375},
        contract_sizes={"BTC": 0.01, "ETH": 0.1, "PEPE": 10_000_000.0, "DOGE": 1000.0, "XRP": 100.0},
        spread_mult=1.3,
        order_latency_ms=30.0,
        min_notional=0.0,  # okx: the minimum is one lot (`limits.amount.min`), no notional floor
    ),
    "hyperliquid": VenueSpec(
        facts=VENUE_FACTS["hyperliquid"],
        index=3,
        spot_assets=("BTC", "ETH", "SOL"),
        perp_assets=_ALL,
        funding_interval_h=1.0,
        funding_style="hyperliquid",
        premium_average="mean",
        rate_limit=50,
        cap_default=0.04,
        perp_bases={"PEPE": "kPEPE"},
        spread_mult=1.5,
        noise_bps=0.6,
        index_market_ids=True,
        order_latency_ms=150.0,  # an L1 block, not a matching engine
        min_notional=10.0,
    ),
}
VENUE_LIST: tuple[VenueSpec, ...] = tuple(sorted(VENUES.values(), key=lambda v: v.index))
