"""The simulated perps' positioning: open interest and liquidation prints, consistent with the market data.

Open interest (in the market's amount unit: contracts on okx swaps, base units elsewhere) moves only when a
trade prints. At each hour start it stands at the hour's level `L(h) = base x exp(0.1 z(h))`, where `base`
is 20 hours of the market's expected traded amount and `z` a smooth keyed wave (periods of 1 to 13 days);
within the hour each trade moves it by its share of the way to `L(h + 1)` plus `OPEN_SHARE` of its amount,
opening (+) or closing (-) at random, less that noise's hourly drift: a bridge pinned to `L` at every hour
start, so any time's value is the same whenever and in whatever order it is asked for, and no trade moves
it by much more than the trade's own size.

Liquidations print a Poisson number of times an hour (`CALM_PER_H`, `HOT_PER_H` in a hot premium regime), at
uniform milliseconds. Mostly longs where the mid fell over the minute before the print, shorts where it
rose (`WITH_MOVE`); a liquidated long is a sell order at that second's bid, a short a buy at the ask; sizes
log-normal around `SIZE_MULT` times the asset's median trade notional. ccxt's `side` follows the real
venue's convention (`VenueFacts.liquidation_side`: bybit's is the position's, the others the order's).
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from ...units import HOUR_MS, SECOND_MS
from ...venues import VenueFacts
from .draws import LRU, iso, keyed_rng
from .market_data import MarketData
from .markets import Market
from .venues import ASSETS

OI_HOURS: Final = 20.0  # open interest is about this many hours of the market's traded amount
OI_WAVE: Final = 0.1  # the level's log swing
OI_PERIODS_H: Final = (29.0, 113.0, 311.0)
OPEN_SHARE: Final = 0.3  # each trade opens or closes this share of its amount, besides the level's drift
CALM_PER_H: Final = 4.0
HOT_PER_H: Final = 24.0
WITH_MOVE: Final = 0.8  # share of liquidations on the side the last minute's move hurts
SIZE_MULT: Final = 3.0
OI_KEY: Final = 10  # random-stream kinds (world 1-4, market data 5, faults 6, book 7, orders 8, latency 9)
LIQ_KEY: Final = 11
_MEAN_LOGNORMAL_TRADE: Final = math.exp(1.1**2 / 2)  # market_data draws trade notionals lognormal(0, 1.1)


def positioning_has(facts: VenueFacts) -> dict[str, bool]:
    """ccxt's `has` flags of a simulated venue's positioning calls: open interest polled (like every real venue in
    ccxt 4.5), liquidations streamed where the real venue has a public channel."""
    liquidations = facts.liquidation_side is not None
    return {"fetchOpenInterest": True, "watchOpenInterest": False, "watchLiquidations": liquidations,
            "unWatchLiquidations": liquidations}  # fmt: skip


class Positioning:
    """Open interest and liquidation prints of the simulated perps (see the module doc)."""

    def __init__(self, data: MarketData, seed: int, side_means: str | None) -> None:
        self.data = data
        self.seed = seed
        self.side_means = side_means
        self._signed = LRU(48)
        self._prints = LRU(96)

    # -- open interest --------------------------------------------------------------------------------------
    def level(self, m: Market, h: int) -> float:
        """Open interest at the start of hour h, in the market's amount unit."""
        asset = ASSETS[m.asset]
        unit_value = asset.price * m.multiplier * m.contract_size
        hourly = self.data.trades_per_s * 3600.0 * asset.notional * _MEAN_LOGNORMAL_TRADE / unit_value
        phases = keyed_rng(self.seed, OI_KEY, m.key, -1).random(len(OI_PERIODS_H)) * 2 * math.pi
        z = sum(math.sin(2 * math.pi * h / p + f) for p, f in zip(OI_PERIODS_H, phases, strict=True))
        return OI_HOURS * hourly * math.exp(OI_WAVE * z / math.sqrt(len(OI_PERIODS_H)))

    def _signed_cum(self, m: Market, h: int) -> np.ndarray:
        """Cumulative signed traded amount of the hour (N + 1 values; each trade opens or closes at random)."""
        key = (m.symbol, h)
        cached = self._signed.hit(key)
        if cached is not None:
            return cached
        chunk = self.data.chunk(m, h)
        signs = np.where(keyed_rng(self.seed, OI_KEY, m.key, h).random(chunk.amount.size) < 0.5, 1.0, -1.0)
        return self._signed.put(key, np.concatenate(([0.0], np.cumsum(signs * chunk.amount))))

    def open_interest_amount(self, m: Market, t: int) -> float:
        """Open interest after every trade up to and including t, amount unit, rounded to the lot."""
        h = t // HOUR_MS
        chunk = self.data.chunk(m, h)
        j = int(np.searchsorted(chunk.ts, t, side="right"))
        total = float(chunk.cum[-1])
        share = float(chunk.cum[j]) / total if total > 0 else 0.0
        signed = self._signed_cum(m, h)
        lo, hi = self.level(m, h), self.level(m, h + 1)
        value = lo + (hi - lo) * share + OPEN_SHARE * (float(signed[j]) - float(signed[-1]) * share)
        return round(max(value, 0.0), m.lot_decimals)

    def open_interest(self, m: Market, t: int) -> dict[str, Any]:
        """ccxt's open-interest structure at market time t (the venue's value of the second)."""
        stamp = t // SECOND_MS * SECOND_MS
        amount = self.open_interest_amount(m, stamp)
        chunk = self.data.chunk(m, stamp // HOUR_MS)
        mark = float(chunk.mark[(stamp - chunk.start_ms) // SECOND_MS])
        value = round(amount * m.contract_size * mark, 2)
        return {
            "symbol": m.symbol,
            "openInterestAmount": amount,
            "openInterestValue": value,
            "baseVolume": None,
            "quoteVolume": None,
            "timestamp": stamp,
            "datetime": iso(stamp),
            "info": {"symbol": m.id, "openInterest": str(amount), "time": stamp},
        }

    # -- liquidations ---------------------------------------------------------------------------------------
    def prints(self, m: Market, h: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """(times, ccxt liquidation structures) of the hour's prints, in time order."""
        key = (m.symbol, h)
        cached = self._prints.hit(key)
        if cached is not None:
            return cached
        hot = self.data.world.hot(m.venue.index, m.a, h)
        gen = keyed_rng(self.seed, LIQ_KEY, m.key, h)
        n = int(gen.poisson(HOT_PER_H if hot else CALM_PER_H))
        offsets = np.sort(gen.choice(HOUR_MS, size=n, replace=False)) if n else np.empty(0, np.int64)
        with_move = gen.random(n) < WITH_MOVE
        sizes = gen.lognormal(0.0, 1.2, n)
        chunk = self.data.chunk(m, h)
        times = (h * HOUR_MS + offsets).astype(np.int64)
        out: list[dict[str, Any]] = []
        for i, t in enumerate(times.tolist()):
            s = (t - chunk.start_ms) // SECOND_MS
            fell = float(chunk.mid[s]) < float(chunk.mid[max(s - 60, 0)])
            long = fell == bool(with_move[i])  # a fall liquidates longs (mostly), a rise shorts
            price = float(chunk.bid[s] if long else chunk.ask[s])
            unit_value = price * m.contract_size
            contracts = max(m.lot, round(ASSETS[m.asset].notional * SIZE_MULT * sizes[i] / unit_value, m.lot_decimals))
            base = contracts * m.contract_size
            order_side = "sell" if long else "buy"
            side = ("buy" if long else "sell") if self.side_means == "position" else order_side
            out.append(
                {
                    "info": {"symbol": m.id, "side": side, "price": str(price), "qty": str(contracts), "time": t},
                    "symbol": m.symbol,
                    "contracts": contracts,
                    "contractSize": m.contract_size,
                    "price": price,
                    "side": side,
                    "baseValue": base,
                    "quoteValue": base * price,
                    "timestamp": t,
                    "datetime": iso(t),
                }
            )
        return self._prints.put(key, (times, out))

    def between(self, m: Market, lo: int, hi: int) -> list[dict[str, Any]]:
        """The prints with lo < t <= hi, in time order."""
        out: list[dict[str, Any]] = []
        for h in range(max(lo + 1, 0) // HOUR_MS, hi // HOUR_MS + 1):
            times, rows = self.prints(m, h)
            i, j = int(np.searchsorted(times, lo, side="right")), int(np.searchsorted(times, hi, side="right"))
            out.extend(rows[i:j])
        return out

    def times_between(self, m: Market, lo: int, hi: int) -> np.ndarray:
        parts = []
        for h in range(max(lo + 1, 0) // HOUR_MS, hi // HOUR_MS + 1):
            times, _ = self.prints(m, h)
            parts.append(times[(times > lo) & (times <= hi)])
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def next_time(self, m: Market, after: int) -> int | None:
        """The first print after `after` (looking up to two days ahead)."""
        for h in range(after // HOUR_MS, after // HOUR_MS + 48):
            times, _ = self.prints(m, h)
            i = int(np.searchsorted(times, after, side="right"))
            if i < times.size:
                return int(times[i])
        return None
