"""A simulated exchange that speaks ccxt.pro and returns ccxt's unified structures, deterministic by seed.

`SimExchange(exchange_id, sim_config)` is a drop-in for a `ccxt.pro.<venue>` object on one of the venues in
`VENUES` (binance, bybit, okx, hyperliquid): the same Feed, capture job and history loader run on it as on
a live venue, and it keeps an exact record of what it sent (`emitted`, `faults_injected`, `lost`), which is
what tests compare landed rows against. Nothing opens or starts in the constructor.

One module per concern, each a collaborator passed what it needs (the design is in docs/architecture.md,
"The simulator"):

- `venues.py`: the assets and each venue's simulator parameters, beside its facts in `core/venues.py`;
- `world.py`: the shared price and premium paths, a function of (seed, start);
- `funding.py`: funding as the venues document it, from the premium path; the funding structures;
- `markets.py`, `market_data.py`: markets, and each hour's book, trades and candles as ccxt structures;
- `faults.py`: `FaultPlan`, the injected faults and their counts;
- `subscriptions.py`: the virtual clock and what each subscription has sent, lost or conflated;
- `exchange.py`: `SimExchange`, the ccxt.pro face.
"""

from __future__ import annotations

from .exchange import MAX_LIMIT, SimExchange
from .faults import MALFORMED_ID_OFFSET, FaultPlan
from .funding import funding_rate_from_premiums
from .markets import TRADE_ID_HOUR
from .venues import ASSET_INDEX, ASSET_NAMES, ASSETS, MAJORS, VENUES, AssetSpec, IntervalChange, VenueSpec
from .world import EPOCH_HOURS, HISTORY_DAYS

__all__ = [
    "ASSETS",
    "ASSET_INDEX",
    "ASSET_NAMES",
    "EPOCH_HOURS",
    "HISTORY_DAYS",
    "MAJORS",
    "MALFORMED_ID_OFFSET",
    "MAX_LIMIT",
    "TRADE_ID_HOUR",
    "VENUES",
    "AssetSpec",
    "FaultPlan",
    "IntervalChange",
    "SimExchange",
    "VenueSpec",
    "funding_rate_from_premiums",
]
