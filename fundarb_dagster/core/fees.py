"""Trading fees by venue, tier and date: what a trade on a given day paid, not what the venue charges today.

Venues publish fee schedules per VIP tier (maker rebates at the top: a negative maker fee) and change them;
an account moves between tiers. The config lists the schedules with the date each took effect
(`fees:` in the source config, see the README), and each exchange's tier (`exchanges[].fee_tier`, `vip0`
unless set). The fee of a trade at time t on (exchange, market) is the entry of the exchange's tier and that
market kind with the latest `valid_from <= t`; with none (a date before the first entry, or an exchange the
config does not list) the venue's base-tier fees of `core/venues.py` apply. `source` says which: `config` or
`venue_default`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from .venues import fees_bps

DEFAULT_TIER: Final = "vip0"
MARKETS: Final = ("spot", "perp")


@dataclass(frozen=True)
class FeeEntry:
    """One venue's fees (bps; negative = a rebate) for one tier and market kind, from `valid_from_ms` on."""

    exchange: str
    tier: str
    market: str  # spot or perp
    maker_bps: float
    taker_bps: float
    valid_from_ms: int


@dataclass(frozen=True)
class FeeTable:
    """Dated fee entries and each exchange's tier (see the module doc)."""

    entries: tuple[FeeEntry, ...] = ()
    tiers: Mapping[str, str] = field(default_factory=dict)

    def _schedule(self, exchange: str, kind: str) -> list[FeeEntry]:
        tier = self.tiers.get(exchange, DEFAULT_TIER)
        own = [e for e in self.entries if e.exchange == exchange and e.tier == tier and e.market == kind]
        return sorted(own, key=lambda e: e.valid_from_ms)

    def fee_at(self, exchange: str, market: str, t_ms: int) -> tuple[float, float, str]:
        """(maker_bps, taker_bps, source) of a trade at `t_ms` on `exchange`'s `market` (spot, perp or swap)."""
        maker, taker, source = self.paths(exchange, market, np.array([t_ms], dtype=np.int64))
        return float(maker[0]), float(taker[0]), source[0]

    def paths(self, exchange: str, market: str, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Maker and taker fees (bps) of a trade at each time of `ts_ms`, and each one's source."""
        base = fees_bps(exchange)
        kind = "spot" if market == "spot" else "perp"
        schedule = self._schedule(exchange, kind)
        starts = np.array([e.valid_from_ms for e in schedule], dtype=np.int64)
        idx = np.searchsorted(starts, np.asarray(ts_ms, dtype=np.int64), side="right") - 1
        makers = np.array([base.maker(kind)] + [e.maker_bps for e in schedule])
        takers = np.array([base.taker(kind)] + [e.taker_bps for e in schedule])
        sources = np.where(idx >= 0, "config", "venue_default").tolist()
        return makers[idx + 1], takers[idx + 1], sources

    def covers(self, exchanges: Sequence[str]) -> bool:
        """Whether any entry names one of `exchanges` (else every fee is the venues' default)."""
        return any(e.exchange in exchanges for e in self.entries)
