"""Simulated spot-margin borrow rates: what a venue charges to borrow a currency, hour by hour.

One rate per (venue, currency) and hour, published at the hour's start, deterministic by the seed:

    apr(h) = base(currency) x venue_mult x exp(0.25 x z(h)) x (HOT_BORROW if the venue's perp of the asset
             runs a hot premium regime in hour h)

`base` grows with the asset's volatility (BTC ~2 %, the quote currency ~9 %, a meme coin ~8 %), `venue_mult` is
a seeded 0.8-1.2 per venue, and `z` a standard normal drawn per day and interpolated linearly across the day
(rates drift, they do not jump every hour). A hot regime is when shorts crowd in and lenders are scarce: the
rate triples. The venue quotes it per its own period (`BORROW_PERIOD_MS`: binance a daily rate, bybit and okx
an hourly one), as ccxt's unified borrow-rate structure. A venue absent from `BORROW_PERIOD_MS` (hyperliquid)
lends nothing, like the real one.
"""

from __future__ import annotations

import math
from typing import Any, Final

from ...units import DAY_MS, HOUR_MS, HOURS_PER_YEAR
from .draws import iso, keyed_rng
from .venues import ASSET_INDEX, ASSETS, VenueSpec
from .world import LazyWorld

BORROW_KEY: Final = 21  # the random-stream kind of borrow rates
HOT_BORROW: Final = 3.0  # a hot regime's rate, x the calm one
QUOTE_APR: Final = 0.09  # borrowing the quote currency (USDT) costs about this, APR
BORROW_PERIOD_MS: Final = {"binance": DAY_MS, "bybit": HOUR_MS, "okx": HOUR_MS}


def base_apr(currency: str) -> float:
    """The calm APR of borrowing `currency`: the quote's, or 2 % plus 8 % per unit of volatility above 0.5."""
    asset = ASSETS.get(currency)
    return QUOTE_APR if asset is None else 0.02 + 0.08 * max(asset.vol - 0.5, 0.0)


class SimBorrow:
    """A venue's borrow rates (see the module doc); `currencies` are the ones it lends."""

    def __init__(self, spec: VenueSpec, seed: int, world: LazyWorld) -> None:
        self.spec = spec
        self.seed = seed
        self.world = world
        self.period_ms = BORROW_PERIOD_MS.get(spec.id, 0)
        self.currencies = (spec.quote, *spec.spot_assets) if self.period_ms else ()
        self.venue_mult = 0.8 + 0.4 * float(keyed_rng(seed, BORROW_KEY, spec.index).random())
        self._days: dict[tuple[str, int], float] = {}

    @property
    def lends(self) -> bool:
        return bool(self.currencies)

    @property
    def has(self) -> dict[str, bool]:
        """ccxt's `has` flags of the borrow methods (ccxt deprecated fetchBorrowRate for the cross one)."""
        lends = self.lends
        return {"fetchBorrowRate": False, "fetchCrossBorrowRate": lends, "fetchCrossBorrowRates": lends,
                "fetchBorrowRateHistory": lends}  # fmt: skip

    def _z(self, currency: str, day: int) -> float:
        key = (currency, day)
        if key not in self._days:
            c = ASSET_INDEX.get(currency, len(ASSET_INDEX))
            self._days[key] = float(keyed_rng(self.seed, BORROW_KEY, self.spec.index, c, day).standard_normal())
        return self._days[key]

    def apr(self, currency: str, hour: int) -> float:
        """The APR in force over absolute hour `hour` (epoch hours)."""
        day, into = divmod(hour * HOUR_MS, DAY_MS)
        frac = into / DAY_MS
        z = (1 - frac) * self._z(currency, day) + frac * self._z(currency, day + 1)
        apr = base_apr(currency) * self.venue_mult * math.exp(0.25 * z)
        if currency in self.spec.perp_assets and self.world.get().hot(self.spec.index, ASSET_INDEX[currency], hour):
            apr *= HOT_BORROW
        return apr

    def structure(self, currency: str, hour: int) -> dict[str, Any]:
        """ccxt's borrow-rate structure of `currency` published at the start of `hour`."""
        ts = hour * HOUR_MS
        rate = self.apr(currency, hour) * (self.period_ms / HOUR_MS) / HOURS_PER_YEAR
        info = {"asset": currency, "timestamp": ts, "interestRate": f"{rate:.12f}", "periodMs": self.period_ms}
        return {"currency": currency, "rate": rate, "period": self.period_ms, "timestamp": ts, "datetime": iso(ts),
                "info": info}  # fmt: skip
