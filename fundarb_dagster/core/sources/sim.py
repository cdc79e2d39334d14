"""A simulated exchange that speaks ccxt.pro and returns ccxt's unified structures, deterministic by seed.

`SimExchange(exchange_id, sim_config)` is a drop-in for a `ccxt.pro.<venue>` object on one of the venues in
`VENUES` (binance, bybit, okx, hyperliquid). Nothing opens or starts in the constructor; the virtual clock
starts at the first call (or at `wall_start`, an epoch-seconds wall time, so several processes can share it).

Interface (exactly what is provided)
------------------------------------
Attributes: `id`, `has`, `markets`, `symbols`, `markets_by_id` (after `await load_markets()`), `rateLimit`,
`timeframes`, `is_sim = True`, and the exact record of what was sent:

- `emitted[(stream, symbol)]`: good messages returned (one per trade, ticker, funding message, candle row).
- `faults_injected[(kind, stream, symbol)]`, kind in disconnect, stale, malformed, duplicate, out_of_order;
  `malformed_kinds[(reason, stream, symbol)]` splits malformed by reason (price:nan, price:negative,
  missing:<field>, timestamp:future).
- `lost[(reason, stream, symbol)]`: events never sent because of a disconnect (until the re-subscription)
  or a stale period; `conflated[(stream, symbol)]`: ticker/funding/ohlcv states overwritten before a call
  picked them up (ccxt.pro keeps only the latest state of those streams too).

Stream names used in those counters: `trades`, `tickers`, `funding`, `ohlcv`.

Methods (all `async` except `milliseconds`, `market`, `parse_timeframe`, `iso8601`, the sim-only helpers):

| method | returns | notes |
|---|---|---|
| `load_markets(reload=False)` | markets dict | `BTC/USDT`, `BTC/USDT:USDT` (`BTC/USDC[:USDC]` on hyperliquid) |
| `watch_trades(symbol)` | list of new trades since the previous call (at most `batch_limit`) | every venue |
| `watch_ticker(symbol)` | the latest ticker | bybit/hyperliquid perps carry funding in `info` |
| `watch_ohlcv(symbol, timeframe='1m')` | candles updated since the previous call | closed ones final |
| `watch_funding_rate(symbol)` | funding-rate structure | every venue (sim extension); `has` is True on okx only |
| `watch_mark_price(symbol)` | ticker structure with binance's markPriceUpdate `info` (r, T, p, i, P) | binance, okx |
| `fetch_trades(symbol, since, limit, params={'until'})` | trades, ascending | limit <= 1000 |
| `fetch_ohlcv(symbol, timeframe, since, limit, params={'until'})` | candles | limit <= 1000, current candle last |
| `fetch_funding_rate_history(symbol, since, limit, params={'until'})` | settled rates | limit <= 1000 |
| `fetch_funding_rate(symbol)` / `fetch_funding_rates(symbols)` / `fetch_ticker(symbol)` | current state | |
| `un_watch_trades/ticker/ohlcv/funding_rate/mark_price(symbol)` | | next call re-subscribes at "now" |
| `close()` | | later watch calls raise `ccxt.ExchangeClosedByUser` |

Sim-only helpers: `premium_index(symbol, since, until)` (the minute premium samples funding comes from),
`funding_rate_at(symbol, t)` (the funding structure at any market time), `settled_rate(symbol, T)`,
`funding_intervals(symbol)`, `served_range(stream, symbol)` ((first subscription, served up to): every event
in it was emitted or counted in `lost`), `funding_via` (the venue's funding channel), and the pure
`funding_rate_from_premiums(...)`.

`has` mirrors the real venue's funding channel by default (`funding_channel="venue"`): binance
`watchMarkPrice` (funding in `info['r']`, next time `info['T']`, `watchFundingRate` False); bybit and
hyperliquid `watchFundingRate` False with funding inside `watch_ticker(...)['info']` (bybit: fundingRate,
nextFundingTime, fundingIntervalHour, fundingCap; hyperliquid: funding (per hour), markPx, oraclePx,
premium); okx `watchFundingRate` and `watchMarkPrice` True. `funding_channel="unified"` sets
`watchFundingRate` True everywhere. True everywhere: watchTrades, watchTicker, watchOHLCV, fetchOHLCV,
fetchTrades, fetchTicker, fetchFundingRate, fetchFundingRates, fetchFundingRateHistory.

Units like the venue: prices per ccxt base (a `1000PEPE` price is 1000 PEPE); amounts, volumes and ticker
sizes in base units except okx swaps, which count contracts (`contractSize`: BTC 0.01, ETH 0.1, PEPE 1e7).

Market model
------------
One log-price path per asset, shared by every venue (hourly anchors: a slowly mean-reverting walk with
correlated shocks across assets; inside the hour a Brownian bridge at one-second resolution). A venue's spot
mid adds small per-second noise; a perp's mid is `index x (1 + premium)`, the premium a mean-reverting
(8 h) process per venue and asset around a small positive bias, with regimes: in each 3-day block a
(venue, asset) runs hot with probability 6 % (premium mean +5..35 bp, mostly positive). Every funding-interval
change in `VenueSpec.interval_changes` comes with the hot regime that caused it (binance moves
`1000PEPE/USDT:USDT` from 8 h to 4 h twelve days before `sim.start` while its premium sits near 90 bp, so
the cap binds; bybit moves `SUI/USDT:USDT` to 4 h six days before). Bid/ask on the tick grid around the mid
with a random spread; takers buy at the ask and sell at the bid; trade times uniform (unique milliseconds),
sizes log-normal.

Funding, as the venues document it: premium-index samples once a minute (the perp premium at each minute
mark), averaged over the interval (binance weights sample k by k, the others equally), then for
binance/bybit/okx `F = P + clamp(I - P, -0.05 %, +0.05 %)` with `I = 0.01 % x interval_h / 8`; hyperliquid
computes the same 8-hour rate and pays 1/8 of it every hour (on the oracle price). Then `F` is clipped to the
venue cap/floor (`VenueSpec.cap(asset)`, also in market `info['fundingCap'/'fundingFloor']`) and rounded to
8 decimals. The streamed (predicted) rate applies the same formula to the samples so far, so it converges to
the settled rate: the last prediction of an interval (after its last minute mark) equals the settled rate,
earlier ones differ. `previousFundingRate` in every funding structure is the settled rate of the last
settlement, equal to `fetch_funding_rate_history`.

Determinism and history
-----------------------
The world is a function of `(sim.seed, sim.start)`. Hourly anchors are generated from an origin 120 days
before `floor_day(sim.start)` in fixed 720-hour epochs (cached per process); everything inside an hour
(per-second paths, trades, fault draws) comes from its own generator keyed by (seed, venue, asset, kind,
absolute hour), so any time range gives the same data whichever order it is asked in. Data before the origin
does not exist (history calls return nothing there); history never reaches past the virtual clock.

Live == history, exactly (with faults off): the trades `watch_trades` returns for a range are
`fetch_trades` for that range (same ids, prices, amounts, timestamps, sides); closed candles from
`watch_ohlcv` equal `fetch_ohlcv`; `previousFundingRate` equals `fetch_funding_rate_history`. Trade ids are
`absolute_hour * 10**7 + k`; injected malformed copies use `... + 5_000_000 + k` (never a real id).

Pacing: `sim.speed` market seconds per wall second. A watch call returns at once what is due up to the
virtual now, else sleeps until the next event. Rates are constructor knobs: `trades_per_s` (per symbol, per
market second; default `sim.trades_per_s`, 3, i.e. ~216 k trades per wall second for 18 symbols at speed 4000),
`ticker_interval_ms`, `funding_update_ms`, `ohlcv_update_ms`, `batch_limit`.

Faults (`sim.faults`, all in market time, deterministic per seed): a disconnect every `disconnect_every_s`
per (stream, symbol) (a per-subscription offset) raises `ccxt.NetworkError` once after all earlier events were
delivered; the next call re-subscribes at the then-current time and events in between are lost. Stale
periods: `stale_every_s` live, then `stale_duration_s` silent, repeating (per-subscription offset): events
inside a silent stretch are never sent and the call stays silent. `malformed_rate`, `duplicate_rate`,
`out_of_order_rate` are probabilities per message: a malformed copy
(extra message), a duplicate (the same trade re-sent, or the same ticker/funding/candle), out-of-order (two
adjacent trades sent swapped, the same pairs whatever the batching; for the other streams the previous message
re-sent after a newer one).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ccxt
import numpy as np

from ..config import SimConfig
from ..instruments import split_multiplier
from ..units import DAY_MS, HOUR_MS, MINUTE_MS
from ..venues import VENUE_FACTS, VenueFacts

EPOCH_HOURS = 720  # hourly anchors are generated in fixed blocks of this many hours from the origin
HISTORY_DAYS = 120  # the world starts this many days before floor_day(sim.start)
REGIME_BLOCK_H = 72
HOT_PROBABILITY = 0.06
TRADE_ID_HOUR = 10_000_000  # trade id = absolute hour * this + k
MALFORMED_ID_OFFSET = 5_000_000
MAX_LIMIT = 1000
FUTURE_SKEW_MS = 365 * DAY_MS

_M64 = (1 << 64) - 1


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
    ),
}
_VENUE_LIST: tuple[VenueSpec, ...] = tuple(sorted(VENUES.values(), key=lambda v: v.index))


# -- pure maths ---------------------------------------------------------------------------------------
def funding_rate_from_premiums(
    premiums: np.ndarray,
    *,
    interval_h: float,
    style: str,
    average: str,
    cap: float,
    floor: float,
    interest_8h: float = 0.0001,
    clamp: float = 0.0005,
) -> float:
    """The funding rate of one interval from its premium-index samples (in order), as the venues document it."""
    samples = np.asarray(premiums, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("premiums: no premium-index samples in the interval")
    weights = np.arange(1, samples.size + 1, dtype=np.float64) if average == "weighted" else np.ones(samples.size)
    premium = float(np.dot(weights, samples) / weights.sum())
    return _funding_from_average(premium, interval_h, style, cap, floor, interest_8h, clamp)


def _funding_from_average(
    premium: float, interval_h: float, style: str, cap: float, floor: float, interest_8h: float, clamp: float
) -> float:
    if style == "clamp":
        interest = interest_8h * interval_h / 8.0
        rate = premium + min(max(interest - premium, -clamp), clamp)
    elif style == "hyperliquid":
        rate = (premium + min(max(interest_8h - premium, -clamp), clamp)) * interval_h / 8.0
    else:
        raise ValueError(f"funding_style: unknown style {style!r}")
    return round(min(max(rate, floor), cap), 8)


def _rng(*keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) & _M64 for k in keys])))


def _unit(*keys: int) -> float:
    """A uniform in [0, 1) from a splitmix64 hash of integer keys (cheap per-message draws)."""
    x = 0x9E3779B97F4A7C15
    for key in keys:
        x = (x + (int(key) & _M64) + 0x9E3779B97F4A7C15) & _M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


# -- the world: hourly anchors and per-second paths, shared by every venue ------------------------------
_KAPPA = 1.0 / (24 * 90)  # log-price pull back to the starting price: ~90-day half-life-ish, keeps levels sane
_RHO = 0.7  # loading of every asset on the common market shock
_PREM_DECAY = math.exp(-1.0 / 8.0)  # premium mean reversion per hour (8-hour time constant)
_PREM_SD = 0.00025  # stationary premium sd (2.5 bp)
_PREM_NOISE = 0.00003  # per-second premium noise (impact-price jitter)


class _World:
    """Hourly anchors from the origin in fixed epochs; per-second paths per hour from keyed generators."""

    def __init__(self, seed: int, start_ms: int) -> None:
        self.seed = seed
        self.origin_h = (start_ms // DAY_MS * DAY_MS - HISTORY_DAYS * DAY_MS) // HOUR_MS
        self.origin_ms = self.origin_h * HOUR_MS
        n_a, n_v = len(ASSET_NAMES), len(_VENUE_LIST)
        self.log_p0 = np.log(np.array([ASSETS[a].price for a in ASSET_NAMES]))
        self.sig_h = np.array([ASSETS[a].vol for a in ASSET_NAMES]) / math.sqrt(8760.0)
        bias_rng = _rng(seed, 11)
        self.bias = bias_rng.uniform(0.00003, 0.00012, (n_v, n_a))
        self.forced: list[tuple[int, int, int, int, float]] = []  # venue, asset, from_h, to_h, premium
        self.changes: dict[tuple[int, int], list[tuple[int, float]]] = {}
        day0 = start_ms // DAY_MS * DAY_MS
        for venue in _VENUE_LIST:
            for change in venue.interval_changes:
                at = day0 - change.days_before_start * DAY_MS
                a = ASSET_INDEX[change.asset]
                self.changes.setdefault((venue.index, a), []).append((at, float(change.interval_h)))
                self.forced.append((venue.index, a, at // HOUR_MS - 72, at // HOUR_MS + 120, change.regime_premium))
        self.x = np.empty((1 + EPOCH_HOURS * 8, n_a))
        self.q = np.empty((1 + EPOCH_HOURS * 8, n_v, n_a))
        self.sd = np.empty((EPOCH_HOURS * 8, n_v, n_a))
        self.x[0] = self.log_p0
        self.q[0] = self.bias
        self.n = 0  # hours generated
        self.spot_cache = _LRU(512)
        self.prem_cache = _LRU(512)
        self.minutes_cache = _LRU(100_000)

    def _grow(self) -> None:
        epoch = self.n // EPOCH_HOURS
        n = EPOCH_HOURS
        if self.n + n + 1 > self.x.shape[0]:
            size = self.x.shape[0] * 2
            self.x = np.resize(self.x, (size, *self.x.shape[1:]))
            self.q = np.resize(self.q, (size, *self.q.shape[1:]))
            self.sd = np.resize(self.sd, (size - 1, *self.sd.shape[1:]))
        rng = _rng(self.seed, 1, epoch)
        n_a, n_v = len(ASSET_NAMES), len(_VENUE_LIST)
        common = rng.standard_normal(n)
        own = rng.standard_normal((n, n_a))
        eps = rng.standard_normal((n, n_v, n_a))
        h0 = self.origin_h + self.n
        mean, sd = self._regimes(h0, n)
        x = self.x[self.n].copy()
        q = self.q[self.n].copy()
        shock = self.sig_h * (_RHO * common[:, None] + math.sqrt(1 - _RHO**2) * own)
        for i in range(n):
            x = x + _KAPPA * (self.log_p0 - x) + shock[i]
            q = mean[i] + (q - mean[i]) * _PREM_DECAY + sd[i] * eps[i]
            self.x[self.n + 1 + i] = x
            self.q[self.n + 1 + i] = q
        self.sd[self.n : self.n + n] = sd
        self.n += n

    def _regimes(self, h0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Premium mean and innovation sd per hour: the venue bias, hot regimes per 3-day block, forced ones."""
        n_a, n_v = len(ASSET_NAMES), len(_VENUE_LIST)
        hours = np.arange(h0, h0 + n)
        blocks = hours // REGIME_BLOCK_H
        mean = np.empty((n, n_v, n_a))
        hot = np.zeros((n, n_v, n_a), dtype=bool)
        for block in np.unique(blocks):
            rng = _rng(self.seed, 2, int(block))
            u = rng.random((n_v, n_a))
            level = rng.uniform(0.0005, 0.0035, (n_v, n_a)) * np.where(rng.random((n_v, n_a)) < 0.85, 1.0, -1.0)
            is_hot = u < HOT_PROBABILITY
            rows = blocks == block
            mean[rows] = self.bias + np.where(is_hot, level, 0.0)
            hot[rows] = is_hot
        for v, a, from_h, to_h, level in self.forced:
            rows = (hours >= from_h) & (hours < to_h)
            mean[rows, v, a] = level
            hot[rows, v, a] = True
        base = _PREM_SD * math.sqrt(1 - _PREM_DECAY**2)
        return mean, np.where(hot, base * 2.5, base)

    def _ensure(self, i: int) -> None:
        if i < 0:
            raise ValueError(f"time: hour index {i} lies before the sim's origin")
        while self.n < i + 1:
            self._grow()

    def spot_seconds(self, a: int, h: int) -> np.ndarray:
        """Log index price of asset `a` at each second of absolute hour `h` (a Brownian bridge between anchors)."""
        key = (a, h)
        cached = self.spot_cache.hit(key)
        if cached is not None:
            return cached
        i = h - self.origin_h
        self._ensure(i)
        x0, x1 = self.x[i, a], self.x[i + 1, a]
        steps = _rng(self.seed, 3, a, h).standard_normal(3600) * (self.sig_h[a] / 60.0)
        walk = np.cumsum(steps)
        t = np.arange(3600) / 3600.0
        path = x0 + t * (x1 - x0) + np.concatenate(([0.0], walk[:-1])) - t * walk[-1]
        return self.spot_cache.put(key, path)

    def premium_seconds(self, v: int, a: int, h: int) -> np.ndarray:
        """The perp premium (fraction) of venue `v`, asset `a` at each second of hour `h`."""
        key = (v, a, h)
        cached = self.prem_cache.hit(key)
        if cached is not None:
            return cached
        i = h - self.origin_h
        self._ensure(i)
        q0, q1 = self.q[i, v, a], self.q[i + 1, v, a]
        rng = _rng(self.seed, 4, v, a, h)
        walk = np.cumsum(rng.standard_normal(3600) * (self.sd[i, v, a] / 60.0))
        t = np.arange(3600) / 3600.0
        path = q0 + t * (q1 - q0) + np.concatenate(([0.0], walk[:-1])) - t * walk[-1]
        path = path + rng.standard_normal(3600) * _PREM_NOISE
        return self.prem_cache.put(key, path)

    def premium_minutes(self, v: int, a: int, h: int) -> np.ndarray:
        key = (v, a, h)
        cached = self.minutes_cache.hit(key)
        if cached is not None:
            return cached
        return self.minutes_cache.put(key, self.premium_seconds(v, a, h)[::60].copy())

    def interval_spans(self, v: int, a: int) -> list[tuple[int | None, float]]:
        """[(valid_from_ms or None, interval_h)]: settlements T > valid_from use interval_h."""
        spans: list[tuple[int | None, float]] = [(None, _VENUE_LIST[v].funding_interval_h)]
        spans += sorted(self.changes.get((v, a), []))
        return spans


_WORLDS: dict[tuple[int, int], _World] = {}


def _world(seed: int, start_ms: int) -> _World:
    key = (seed, start_ms)
    if key not in _WORLDS:
        _WORLDS[key] = _World(seed, start_ms)
    return _WORLDS[key]


# -- per market -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Market:
    symbol: str
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
class _Chunk:
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


@dataclass
class _Stream:
    first: int | None = None  # the first subscription's time
    cursor: int | None = None  # every event at or before this time is handled
    lost_from: int | None = None  # after a disconnect/unwatch: events after this are lost until re-subscription
    lost_reason: str = "disconnect"
    pending: deque = field(default_factory=deque)
    last_msg: Any = None
    ohlcv_bucket: int | None = None
    last_closed: list[float] | None = None


_TIMEFRAMES = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
}
_STREAM_CODE = {"trades": 1, "tickers": 2, "funding": 3, "ohlcv": 4}
_BAD_REASONS = ("price:nan", "price:negative", "missing", "timestamp:future")
_MISSING_FIELD = {"trades": "amount", "tickers": "bid", "funding": "fundingRate", "ohlcv": "close"}


def _round(value: float, decimals: int) -> float:
    return round(float(value), decimals)


class SimExchange:
    """A simulated venue with ccxt.pro's method names and ccxt's unified structures (see the module doc)."""

    is_sim = True

    def __init__(
        self,
        exchange_id: str,
        sim: SimConfig,
        symbols: Sequence[str] | None = None,
        *,
        trades_per_s: float | None = None,
        ticker_interval_ms: int = 1000,
        funding_update_ms: int = 3000,
        ohlcv_update_ms: int = 2000,
        batch_limit: int = 1000,
        funding_channel: str = "venue",
        wall_start: float | None = None,
    ) -> None:
        if exchange_id not in VENUES:
            raise ValueError(f"exchange_id: unknown sim venue {exchange_id!r}; expected one of {sorted(VENUES)}")
        if trades_per_s is None:
            trades_per_s = sim.trades_per_s
        if not (0 < trades_per_s <= 500):
            raise ValueError(f"trades_per_s: {trades_per_s!r} must be in (0, 500]")
        for name, value in (
            ("ticker_interval_ms", ticker_interval_ms),
            ("funding_update_ms", funding_update_ms),
            ("ohlcv_update_ms", ohlcv_update_ms),
            ("batch_limit", batch_limit),
        ):
            if int(value) < 1:
                raise ValueError(f"{name}: {value!r} must be >= 1")
        if funding_channel not in ("venue", "unified"):
            raise ValueError(f"funding_channel: {funding_channel!r}; expected 'venue' or 'unified'")
        if not sim.speed > 0:
            raise ValueError(f"sim.speed: {sim.speed!r} must be > 0")
        self.id = exchange_id
        self.spec = VENUES[exchange_id]
        self.sim = sim
        self.seed = int(sim.seed)
        self.speed = float(sim.speed)
        self.start_ms = sim.start_ms
        self.faults = sim.faults
        self.requested_symbols = tuple(symbols) if symbols else ()
        self.trades_per_s = float(trades_per_s)
        self.ticker_interval_ms = int(ticker_interval_ms)
        self.funding_update_ms = int(funding_update_ms)
        self.ohlcv_update_ms = int(ohlcv_update_ms)
        self.batch_limit = int(batch_limit)
        self.rateLimit = self.spec.rate_limit
        self.timeframes = {tf: tf for tf in _TIMEFRAMES}
        self.markets: dict[str, dict[str, Any]] = {}
        self.markets_by_id: dict[str, list[dict[str, Any]]] = {}
        self.symbols: list[str] = []
        channel = self.spec.funding_channel
        self.has: dict[str, Any] = {
            "ws": True,
            "spot": True,
            "swap": True,
            "future": False,
            "option": False,
            "watchTrades": True,
            "watchTicker": True,
            "watchOHLCV": True,
            "watchFundingRate": channel == "funding_rate" or funding_channel == "unified",
            "watchMarkPrice": self.spec.facts.mark_price_stream,
            "fetchMarkets": True,
            "fetchTrades": True,
            "fetchOHLCV": True,
            "fetchTicker": True,
            "fetchFundingRate": True,
            "fetchFundingRates": True,
            "fetchFundingRateHistory": True,
            "unWatchTrades": True,
            "unWatchTicker": True,
            "unWatchOHLCV": True,
            "unWatchFundingRate": channel == "funding_rate" or funding_channel == "unified",
            "unWatchMarkPrice": self.spec.facts.mark_price_stream,
        }
        # How this venue delivers funding on its sockets, for consumers that dispatch on it.
        self.funding_via = "funding_rate" if funding_channel == "unified" else channel
        self.emitted: Counter = Counter()
        self.faults_injected: Counter = Counter()
        self.malformed_kinds: Counter = Counter()
        self.lost: Counter = Counter()
        self.conflated: Counter = Counter()
        self._wall0 = wall_start
        self._closed = False
        self._world: _World | None = None
        self._m: dict[str, _Market] = {}
        self._chunks = _LRU(48)
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._funding_cache = _LRU(2048)
        f = sim.faults
        self._faults_on = bool(f.malformed_rate or f.duplicate_rate or f.out_of_order_rate)

    # -- clock and plumbing -----------------------------------------------------------------------
    def milliseconds(self) -> int:
        """The virtual clock (epoch ms): sim.start plus wall time elapsed since the clock started, x speed.

        With `sim.now` set the clock stands still there (history of an earlier simulated period)."""
        if self.sim.now_ms is not None:
            return self.sim.now_ms
        if self._wall0 is None:
            self._wall0 = time.time()
        return self.start_ms + int((time.time() - self._wall0) * self.speed * 1000.0)

    def iso8601(self, ms: int | None) -> str | None:
        return None if ms is None else _iso(int(ms))

    def parse_timeframe(self, timeframe: str) -> int:
        try:
            return _TIMEFRAMES[timeframe]
        except KeyError:
            raise ccxt.BadRequest(
                f"timeframe: {timeframe!r} not supported; expected one of {list(_TIMEFRAMES)}"
            ) from None

    @property
    def world(self) -> _World:
        if self._world is None:
            self._world = _world(self.seed, self.start_ms)
        return self._world

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ccxt.ExchangeClosedByUser(f"sim {self.id}: closed")

    async def _wait_until(self, target_ms: int) -> None:
        now = self.milliseconds()
        await asyncio.sleep(max(0.0, (target_ms - now) / self.speed / 1000.0))

    # -- markets --------------------------------------------------------------------------------------
    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        self._check_open()
        self.milliseconds()  # starts the clock
        if self.markets and not reload:
            return self.markets
        spec = self.spec
        markets: dict[str, dict[str, Any]] = {}
        for swap, assets in ((False, spec.spot_assets), (True, spec.perp_assets)):
            for asset in assets:
                market = self._build_market(asset, swap)
                markets[market["symbol"]] = market
        self.markets = markets
        self.symbols = sorted(markets)
        self.markets_by_id = {}
        for market in markets.values():
            self.markets_by_id.setdefault(market["id"], []).append(market)
        return markets

    def _build_market(self, asset: str, swap: bool) -> dict[str, Any]:
        spec = self.spec
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
        self._m[symbol] = _Market(
            symbol=symbol,
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
        market_id = spec.market_id(base, swap, asset)
        info: dict[str, Any] = {"symbol": market_id, "simAsset": asset, "status": "TRADING"}
        if swap:
            v = spec.index
            spans = self.world.interval_spans(v, a)
            now = self.milliseconds()
            info.update(
                {
                    "fundingIntervalHours": self._interval_for(v, a, self._next_settlement(v, a, now)),
                    "fundingIntervalHistory": [
                        [self.world.origin_ms if start is None else start, hours] for start, hours in spans
                    ],
                    "fundingCap": spec.cap(asset),
                    "fundingFloor": -spec.cap(asset),
                    "fundingStyle": spec.funding_style,
                    "premiumAverage": spec.premium_average,
                    "interestRate8h": spec.interest_8h,
                    "fundingClamp": spec.clamp,
                }
            )
        return {
            "id": market_id,
            "symbol": symbol,
            "base": base,
            "quote": quote,
            "settle": quote if swap else None,
            "baseId": base,
            "quoteId": quote,
            "settleId": quote if swap else None,
            "type": "swap" if swap else "spot",
            "spot": not swap,
            "margin": False,
            "swap": swap,
            "future": False,
            "option": False,
            "active": True,
            "contract": swap,
            "linear": True if swap else None,
            "inverse": False if swap else None,
            "contractSize": contract_size if swap else None,
            "expiry": None,
            "expiryDatetime": None,
            "strike": None,
            "optionType": None,
            "taker": 0.0005 if swap else 0.001,
            "maker": 0.0002 if swap else 0.001,
            "precision": {"amount": 10.0**-lot_decimals, "price": 10.0**-decimals},
            "limits": {
                "amount": {"min": 10.0**-lot_decimals, "max": None},
                "price": {"min": 10.0**-decimals, "max": None},
                "cost": {"min": 5.0, "max": None},
                "leverage": {"min": 1.0, "max": 50.0 if swap else 1.0},
            },
            "created": None,
            "info": info,
        }

    def market(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.markets:
            raise ccxt.BadSymbol(f"symbol: {symbol!r} is not listed by sim exchange {self.id!r}")
        return self.markets[symbol]

    async def _market(self, symbol: str) -> _Market:
        self._check_open()
        if not self.markets:
            await self.load_markets()
        self.market(symbol)
        return self._m[symbol]

    # -- chunks: one hour of one market -----------------------------------------------------------------
    def _chunk(self, m: _Market, h: int) -> _Chunk:
        key = (m.symbol, h)
        cached = self._chunks.hit(key)
        if cached is not None:
            return cached
        world = self.world
        v = m.venue.index
        log_index = world.spot_seconds(m.a, h)
        index = np.exp(log_index) * m.multiplier
        rng = _rng(self.seed, 5, m.key, h)
        noise = rng.standard_normal(3600) * (m.venue.noise_bps * 1e-4)
        if m.swap:
            prem = world.premium_seconds(v, m.a, h)
            mid = index * (1.0 + prem)
        else:
            mid = index * np.exp(noise)
        spread = np.maximum(m.tick, mid * 2 * m.half_spread * rng.lognormal(0.0, 0.35, 3600))
        bid_ticks = np.floor((mid - spread / 2) / m.tick)
        ask_ticks = bid_ticks + np.maximum(1.0, np.ceil(spread / m.tick))
        bid = np.round(bid_ticks * m.tick, m.decimals)
        ask = np.round(ask_ticks * m.tick, m.decimals)
        unit_value = mid * m.contract_size
        size_scale = ASSETS[m.asset].notional * 4 / unit_value
        bid_size = np.maximum(m.lot, np.round(size_scale * rng.lognormal(0.0, 0.8, 3600), m.lot_decimals))
        ask_size = np.maximum(m.lot, np.round(size_scale * rng.lognormal(0.0, 0.8, 3600), m.lot_decimals))
        n = int(rng.poisson(self.trades_per_s * 3600.0))
        n = min(n, 3_599_000)
        offsets = np.sort(rng.integers(0, HOUR_MS - n, n)) + np.arange(n)
        sec = offsets // 1000
        side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
        price = np.where(side > 0, ask[sec], bid[sec])
        amount = ASSETS[m.asset].notional * rng.lognormal(0.0, 1.1, n) / unit_value[sec]
        amount = np.maximum(m.lot, np.round(amount, m.lot_decimals))
        start_ms = h * HOUR_MS
        ts = start_ms + offsets
        cum = np.concatenate(([0.0], np.cumsum(amount)))
        minute_idx = np.searchsorted(offsets, np.arange(61) * MINUTE_MS)
        mark = np.round(mid, m.decimals) if m.swap else mid
        chunk = _Chunk(
            start_ms=start_ms,
            mid=mid,
            bid=bid,
            ask=ask,
            bid_size=bid_size,
            ask_size=ask_size,
            index=np.round(index, m.decimals),
            mark=mark,
            ts=ts.astype(np.int64),
            price=price,
            amount=amount,
            side=side,
            draws=None,
            bad_kind=None,
            cum=cum,
            minute_idx=minute_idx,
            candles=[],
        )
        chunk.candles = self._final_candles(m, chunk)
        if self._faults_on:
            # A separate generator, so the market data is the same whether faults are on or off.
            fault_rng = _rng(self.seed, 6, m.key, h)
            chunk.draws = fault_rng.random((n, 3))
            chunk.bad_kind = fault_rng.integers(0, len(_BAD_REASONS), n)
        return self._chunks.put(key, chunk)

    def _final_candles(self, m: _Market, chunk: _Chunk) -> list[list[float]]:
        """The 60 closed 1m candles of a chunk, vectorised; identical to `_candle_rows` minute by minute."""
        starts, ends = chunk.minute_idx[:-1], chunk.minute_idx[1:]
        filled = ends > starts
        ts = chunk.start_ms + np.arange(60, dtype=np.int64) * MINUTE_MS
        flat = np.round(chunk.mid[::60], m.decimals)
        opens, highs, lows, closes = flat.copy(), flat.copy(), flat.copy(), flat.copy()
        volumes = np.zeros(60)
        if filled.any():
            first = starts[filled]
            opens[filled] = chunk.price[first]
            closes[filled] = chunk.price[ends[filled] - 1]
            highs[filled] = np.maximum.reduceat(chunk.price, first)[: first.size]
            lows[filled] = np.minimum.reduceat(chunk.price, first)[: first.size]
            volumes[filled] = np.round(chunk.cum[ends[filled]] - chunk.cum[first], m.lot_decimals)
        return [
            [t, o, hi, lo, c, v]
            for t, o, hi, lo, c, v in zip(
                ts.tolist(),
                opens.tolist(),
                highs.tolist(),
                lows.tolist(),
                closes.tolist(),
                volumes.tolist(),
                strict=True,
            )
        ]

    def _candle_rows(self, m: _Market, chunk: _Chunk, j: int, stop: int) -> list[float]:
        """Minute j of a chunk from its trades [minute start, stop): [ts, o, h, l, c, v]."""
        begin = int(chunk.minute_idx[j])
        ts = chunk.start_ms + j * MINUTE_MS
        # np.round on arrays, exactly as `_final_candles` does, so partial and final rows agree to the bit.
        if stop <= begin:
            flat = float(np.round(chunk.mid[j * 60 : j * 60 + 1], m.decimals)[0])
            return [ts, flat, flat, flat, flat, 0.0]
        prices = chunk.price[begin:stop]
        volume = float(np.round(chunk.cum[stop : stop + 1] - chunk.cum[begin : begin + 1], m.lot_decimals)[0])
        return [ts, float(prices[0]), float(prices.max()), float(prices.min()), float(prices[-1]), volume]

    def _candle(self, m: _Market, tf_ms: int, bucket: int, upto: int) -> list[float]:
        """The candle of [bucket, bucket + tf) as known at time `upto` (inclusive)."""
        rows = []
        minute = bucket
        end = min(bucket + tf_ms, upto + 1)
        while minute < end:
            chunk = self._chunk(m, minute // HOUR_MS)
            j = (minute - chunk.start_ms) // MINUTE_MS
            if minute + MINUTE_MS - 1 <= upto:
                rows.append(chunk.candles[j])
            else:
                stop = int(np.searchsorted(chunk.ts, upto, side="right"))
                rows.append(self._candle_rows(m, chunk, j, max(stop, int(chunk.minute_idx[j]))))
            minute += MINUTE_MS
        if len(rows) == 1:
            return list(rows[0])
        return [
            bucket,
            rows[0][1],
            max(r[2] for r in rows),
            min(r[3] for r in rows),
            rows[-1][4],
            _round(sum(r[5] for r in rows), m.lot_decimals),
        ]

    # -- structures -------------------------------------------------------------------------------------
    def _trades(self, m: _Market, chunk: _Chunk, hour: int, idx: np.ndarray) -> list[dict[str, Any]]:
        """ccxt trade structures for trade indices of a chunk (built from lists: this is the hot path)."""
        if idx.size == 0:
            return []
        symbol, size = m.symbol, m.contract_size
        first_id = hour * TRADE_ID_HOUR
        times = chunk.ts[idx]
        out = []
        for i, ts, stamp, price, amount, side in zip(
            idx.tolist(),
            times.tolist(),
            np.datetime_as_string(times.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist(),
            chunk.price[idx].tolist(),
            chunk.amount[idx].tolist(),
            chunk.side[idx].tolist(),
            strict=True,
        ):
            trade_id = str(first_id + i)
            out.append(
                {
                    "info": {"t": trade_id, "p": price, "q": amount, "T": ts, "m": side < 0},
                    "id": trade_id,
                    "order": None,
                    "timestamp": ts,
                    "datetime": stamp,
                    "symbol": symbol,
                    "type": None,
                    "side": "buy" if side > 0 else "sell",
                    "takerOrMaker": "taker",
                    "price": price,
                    "amount": amount,
                    "cost": price * amount * size,
                    "fee": None,
                    "fees": [],
                }
            )
        return out

    def _ticker(self, m: _Market, t: int) -> dict[str, Any]:
        chunk = self._chunk(m, t // HOUR_MS)
        s = (t - chunk.start_ms) // 1000
        stop = int(np.searchsorted(chunk.ts, t, side="right"))
        last = float(chunk.price[stop - 1]) if stop > 0 else _round(chunk.mid[0], m.decimals)
        bid, ask = float(chunk.bid[s]), float(chunk.ask[s])
        bid_size, ask_size = float(chunk.bid_size[s]), float(chunk.ask_size[s])
        mark = float(chunk.mark[s]) if m.swap else None
        index = float(chunk.index[s]) if m.swap else None
        venue = self.spec.id
        market_id = self.markets[m.symbol]["id"]
        if venue == "binance":
            info: dict[str, Any] = {"e": "bookTicker", "E": t, "s": market_id, "b": str(bid), "B": str(bid_size)}
            info.update({"a": str(ask), "A": str(ask_size)})
        elif venue == "okx":
            info = {"instId": market_id, "last": str(last), "bidPx": str(bid), "bidSz": str(bid_size)}
            info.update({"askPx": str(ask), "askSz": str(ask_size), "ts": str(t)})
        elif venue == "bybit":
            info = {"symbol": market_id, "lastPrice": str(last), "bid1Price": str(bid), "bid1Size": str(bid_size)}
            info.update({"ask1Price": str(ask), "ask1Size": str(ask_size)})
        else:
            info = {"coin": market_id, "midPx": str(_round((bid + ask) / 2, m.decimals + 1))}
        if m.swap:
            state = self._funding_state(m, t)
            if venue == "bybit":
                info.update(
                    {
                        "markPrice": str(mark),
                        "indexPrice": str(index),
                        "fundingRate": f"{state['rate']:.8f}",
                        "nextFundingTime": str(state["T1"]),
                        "fundingIntervalHour": str(int(state["L"])),
                        "fundingCap": str(self.spec.cap(m.asset)),
                    }
                )
            elif venue == "hyperliquid":
                info.update(
                    {
                        "markPx": str(mark),
                        "oraclePx": str(index),
                        "funding": f"{state['rate']:.8f}",
                        "premium": f"{state['premium']:.8f}",
                        "impactPxs": [str(bid), str(ask)],
                    }
                )
        return {
            "symbol": m.symbol,
            "timestamp": t,
            "datetime": _iso(t),
            "high": None,
            "low": None,
            "bid": bid,
            "bidVolume": bid_size,
            "ask": ask,
            "askVolume": ask_size,
            "vwap": None,
            "open": None,
            "close": last,
            "last": last,
            "previousClose": None,
            "change": None,
            "percentage": None,
            "average": None,
            "baseVolume": None,
            "quoteVolume": None,
            "markPrice": mark,
            "indexPrice": index,
            "info": info,
        }

    # -- funding ----------------------------------------------------------------------------------------
    def _spans(self, v: int, a: int) -> list[tuple[int | None, float]]:
        return self.world.interval_spans(v, a)

    def _next_settlement(self, v: int, a: int, t: int) -> int:
        """The first settlement strictly after t."""
        spans = self._spans(v, a)
        hours = spans[0][1]
        for start, interval_h in spans[1:]:
            if start is not None and t >= start:
                hours = interval_h
        step = int(hours * HOUR_MS)
        return (t // step + 1) * step

    def _interval_for(self, v: int, a: int, settlement: int) -> float:
        """The interval (hours) that ends at a settlement: the span with valid_from < T."""
        hours = self._spans(v, a)[0][1]
        for start, interval_h in self._spans(v, a)[1:]:
            if start is not None and settlement > start:
                hours = interval_h
        return hours

    def _prev_settlement(self, v: int, a: int, settlement: int) -> int:
        return settlement - int(self._interval_for(v, a, settlement) * HOUR_MS)

    def _interval_premiums(self, m: _Market, settlement: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Premium samples (minute marks in [T - L, T)) with their times, and L in hours."""
        v = m.venue.index
        interval_h = self._interval_for(v, m.a, settlement)
        begin = settlement - int(interval_h * HOUR_MS)
        hours = range(begin // HOUR_MS, settlement // HOUR_MS)
        samples = np.concatenate([self.world.premium_minutes(v, m.a, h) for h in hours])
        times = begin + np.arange(samples.size, dtype=np.int64) * MINUTE_MS
        return times, samples, interval_h

    def _funding_parts(self, m: _Market, settlement: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        key = (m.symbol, settlement)
        cached = self._funding_cache.hit(key)
        if cached is not None:
            return cached
        times, samples, interval_h = self._interval_premiums(m, settlement)
        weights = np.arange(1, samples.size + 1, dtype=np.float64)
        if m.venue.premium_average != "weighted":
            weights = np.ones(samples.size)
        running = np.cumsum(weights * samples) / np.cumsum(weights)
        return self._funding_cache.put(key, (times, samples, running, interval_h))

    def _rate(self, m: _Market, premium: float, interval_h: float) -> float:
        spec = m.venue
        cap = spec.cap(m.asset)
        return _funding_from_average(premium, interval_h, spec.funding_style, cap, -cap, spec.interest_8h, spec.clamp)

    def settled_rate(self, symbol: str, settlement: int) -> float:
        """The settled funding rate of a perp at a settlement time (sim-only helper; markets must be loaded)."""
        m = self._m[symbol]
        times, samples, _, interval_h = self._funding_parts(m, settlement)
        return funding_rate_from_premiums(
            samples,
            interval_h=interval_h,
            style=m.venue.funding_style,
            average=m.venue.premium_average,
            cap=m.venue.cap(m.asset),
            floor=-m.venue.cap(m.asset),
            interest_8h=m.venue.interest_8h,
            clamp=m.venue.clamp,
        )

    def premium_index(self, symbol: str, since: int, until: int) -> tuple[np.ndarray, np.ndarray]:
        """Sim-only: the premium-index samples (minute marks in [since, until)) funding is computed from."""
        m = self._m[symbol]
        if not m.swap:
            raise ValueError(f"symbol: {symbol!r} is spot; premium index exists for perps only")
        first = (since + MINUTE_MS - 1) // MINUTE_MS * MINUTE_MS
        hours = range(first // HOUR_MS, (until - 1) // HOUR_MS + 1)
        samples = np.concatenate([self.world.premium_minutes(m.venue.index, m.a, h) for h in hours])
        times = hours[0] * HOUR_MS + np.arange(samples.size, dtype=np.int64) * MINUTE_MS
        keep = (times >= since) & (times < until)
        return times[keep], samples[keep]

    def _mark_index(self, m: _Market, t: int) -> tuple[float, float]:
        """Mark and index price of a perp at t from the world paths (no trade generation)."""
        h = t // HOUR_MS
        s = (t - h * HOUR_MS) // 1000
        index = np.exp(self.world.spot_seconds(m.a, h)[s : s + 1]) * m.multiplier
        mid = index * (1.0 + self.world.premium_seconds(m.venue.index, m.a, h)[s : s + 1])
        return float(np.round(mid, m.decimals)[0]), float(np.round(index, m.decimals)[0])

    def funding_rate_at(self, symbol: str, t: int) -> dict[str, Any]:
        """Sim-only: the funding-rate structure `watch_funding_rate` would send at market time t."""
        m = self._m[symbol]
        if not m.swap:
            raise ValueError(f"symbol: {symbol!r} is spot; funding exists for perps only")
        return self._funding_structure(m, int(t))

    def served_range(self, stream: str, symbol: str) -> tuple[int, int] | None:
        """Sim-only: (first subscription time, time served up to) of a subscription, None before any.

        Every event with first < t <= served-up-to was either sent (counted in `emitted`) or is counted in
        `lost`; `stream` is the counters' name (`ohlcv:<timeframe>` and `mark_price` for those calls).
        """
        st = self._streams.get((stream, symbol))
        if st is None or st.first is None:
            return None
        return st.first, st.cursor if st.cursor is not None else (st.lost_from or st.first)

    def funding_intervals(self, symbol: str) -> list[tuple[int | None, float]]:
        """Sim-only: [(valid_from_ms or None, interval_h)]; settlements after valid_from use interval_h."""
        m = self._m[symbol]
        return list(self._spans(m.venue.index, m.a))

    def _funding_state(self, m: _Market, t: int) -> dict[str, Any]:
        v = m.venue.index
        t1 = self._next_settlement(v, m.a, t)
        times, samples, running, interval_h = self._funding_parts(m, t1)
        known = int(np.searchsorted(times, t, side="right"))
        premium = float(running[known - 1])
        rate = self._rate(m, premium, interval_h)
        t0 = t1 - int(interval_h * HOUR_MS)
        prev_parts = self._funding_parts(m, t0)
        previous = self._rate(m, float(prev_parts[2][-1]), prev_parts[3])
        next_l = self._interval_for(v, m.a, t1 + 1)
        return {
            "T1": t1,
            "T0": t0,
            "L": interval_h,
            "rate": rate,
            "premium": float(samples[known - 1]),
            "previous": previous,
            "next_ts": t1 + int(next_l * HOUR_MS),
        }

    def _funding_structure(self, m: _Market, t: int) -> dict[str, Any]:
        state = self._funding_state(m, t)
        mark, index = self._mark_index(m, t)
        market_id = self.markets[m.symbol]["id"]
        interval = f"{state['L']:g}h"
        interest = m.venue.interest_8h * state["L"] / 8.0
        info = {
            "instId": market_id,
            "fundingRate": f"{state['rate']:.8f}",
            "fundingTime": str(state["T1"]),
            "nextFundingTime": str(state["next_ts"]),
            "premium": f"{state['premium']:.8f}",
            "interestRate": f"{interest:.8f}",
            "maxFundingRate": str(m.venue.cap(m.asset)),
            "minFundingRate": str(-m.venue.cap(m.asset)),
            "method": "current_period",
            "fundingIntervalHours": state["L"],
            "ts": str(t),
        }
        return {
            "info": info,
            "symbol": m.symbol,
            "markPrice": mark,
            "indexPrice": index,
            "interestRate": interest,
            "estimatedSettlePrice": None,
            "timestamp": t,
            "datetime": _iso(t),
            "fundingRate": state["rate"],
            "fundingTimestamp": state["T1"],
            "fundingDatetime": _iso(state["T1"]),
            "nextFundingRate": None,
            "nextFundingTimestamp": state["next_ts"],
            "nextFundingDatetime": _iso(state["next_ts"]),
            "previousFundingRate": state["previous"],
            "previousFundingTimestamp": state["T0"],
            "previousFundingDatetime": _iso(state["T0"]),
            "interval": interval,
        }

    def _mark_price_structure(self, m: _Market, t: int) -> dict[str, Any]:
        state = self._funding_state(m, t)
        mark, index = self._mark_index(m, t)
        market_id = self.markets[m.symbol]["id"]
        if self.id == "okx":
            info: dict[str, Any] = {"instType": "SWAP", "instId": market_id, "markPx": str(mark), "ts": str(t)}
        else:
            info = {"e": "markPriceUpdate", "E": t, "s": market_id, "p": str(mark), "i": str(index), "P": str(mark)}
            info.update({"r": f"{state['rate']:.8f}", "T": state["T1"]})
        ticker = dict.fromkeys(
            ("high", "low", "bid", "bidVolume", "ask", "askVolume", "vwap", "open", "close", "last"), None
        )
        ticker.update(dict.fromkeys(("previousClose", "change", "percentage", "average"), None))
        ticker.update({"baseVolume": None, "quoteVolume": None})
        ticker.update({"symbol": m.symbol, "timestamp": t, "datetime": _iso(t), "markPrice": mark, "indexPrice": index})
        ticker["info"] = info
        return ticker

    # -- faults -----------------------------------------------------------------------------------------
    def _fault_key(self, stream: str, m: _Market) -> tuple[int, int, int]:
        return (self.seed, _STREAM_CODE[stream], m.key)

    def _period(self, every_s: float, salt: int, stream: str, m: _Market) -> tuple[int, int] | None:
        if every_s <= 0:
            return None
        every = max(1, int(every_s * 1000))
        offset = int(_unit(*self._fault_key(stream, m), salt) * every)
        return every, offset

    def _next_disconnect(self, stream: str, m: _Market, after: int) -> int | None:
        period = self._period(self.faults.disconnect_every_s, 101, stream, m)
        if period is None:
            return None
        every, offset = period
        return ((after - offset) // every + 1) * every + offset

    def _stale(self, stream: str, m: _Market) -> tuple[int, int, int] | None:
        """(period, offset, duration) of a subscription's stale windows: live `stale_every_s`, then silent
        `stale_duration_s`, repeating (so any pair of values is meaningful; the stream is never silent forever)."""
        f = self.faults
        if f.stale_duration_s <= 0 or f.stale_every_s <= 0:
            return None
        duration = max(1, int(f.stale_duration_s * 1000))
        period = self._period(f.stale_every_s + f.stale_duration_s, 202, stream, m)
        if period is None:
            return None
        every, offset = period
        return every, offset, duration

    def _stale_end(self, stale: tuple[int, int, int] | None, t: int) -> int | None:
        """If t lies in a stale window, the window's end (exclusive)."""
        if stale is None:
            return None
        every, offset, duration = stale
        k = (t - offset) // every
        start = offset + k * every
        return start + duration if t < start + duration else None

    def _stale_mask(self, stale: tuple[int, int, int] | None, times: np.ndarray) -> np.ndarray:
        if stale is None:
            return np.zeros(times.shape, dtype=bool)
        every, offset, duration = stale
        return (times - offset) % every < duration

    def _count_stale_windows(self, stale: tuple[int, int, int] | None, lo: int, hi: int) -> int:
        """Stale windows starting in (lo, hi]."""
        if stale is None or hi <= lo:
            return 0
        every, offset, _ = stale
        return (hi - offset) // every - (lo - offset) // every

    # -- event times ------------------------------------------------------------------------------------
    def _next_trade(self, m: _Market, after: int) -> int | None:
        h = after // HOUR_MS
        for hour in range(h, h + 48):
            chunk = self._chunk(m, hour)
            i = int(np.searchsorted(chunk.ts, after, side="right"))
            if i < chunk.ts.size:
                return int(chunk.ts[i])
        return None

    def _trades_between(self, m: _Market, lo: int, hi: int) -> Iterator[tuple[_Chunk, int, np.ndarray]]:
        """(chunk, hour, indices) of the trades with lo < ts <= hi, hour by hour (lazily)."""
        for hour in range(max(lo + 1, 0) // HOUR_MS, hi // HOUR_MS + 1):
            chunk = self._chunk(m, hour)
            i = int(np.searchsorted(chunk.ts, lo, side="right"))
            j = int(np.searchsorted(chunk.ts, hi, side="right"))
            if j > i:
                yield chunk, hour, np.arange(i, j)

    def _count_events(self, stream: str, m: _Market, lo: int, hi: int, grid: int) -> int:
        if hi <= lo:
            return 0
        if stream == "trades":
            return sum(idx.size for _, _, idx in self._trades_between(m, lo, hi))
        return hi // grid - lo // grid

    def _count_stale_events(self, stream: str, m: _Market, lo: int, hi: int, grid: int) -> int:
        stale = self._stale(stream, m)
        if stale is None or hi <= lo:
            return 0
        if stream == "trades":
            return sum(int(self._stale_mask(stale, c.ts[idx]).sum()) for c, _, idx in self._trades_between(m, lo, hi))
        first, last = lo // grid + 1, hi // grid
        if last < first:
            return 0
        return int(self._stale_mask(stale, np.arange(first, last + 1, dtype=np.int64) * grid).sum())

    def _next_event(self, stream: str, m: _Market, after: int, grid: int) -> int | None:
        """The first event after `after` outside stale windows."""
        stale = self._stale(stream, m)
        t = after
        for _ in range(10_000):
            e = self._next_trade(m, t) if stream == "trades" else (t // grid + 1) * grid
            if e is None:
                return None
            end = self._stale_end(stale, e)
            if end is None:
                return e
            t = end - 1
        return None

    async def _due(self, key: tuple[str, str], stream: str, m: _Market, grid: int) -> tuple[_Stream, int, int]:
        """Wait until events are due on a subscription; returns (state, lo, hi): deliver events in (lo, hi].

        Raises ccxt.NetworkError at a scheduled disconnect once everything before it was delivered.
        """
        st = self._streams.setdefault(key, _Stream())
        while True:
            self._check_open()
            now = self.milliseconds()
            if st.cursor is None:
                if st.lost_from is not None:
                    lost = self._count_events(stream, m, st.lost_from, now, grid)
                    self.lost[(st.lost_reason, stream, m.symbol)] += lost
                    # Stale windows that began while unsubscribed still count: the stream went silent.
                    windows = self._count_stale_windows(self._stale(stream, m), st.lost_from, now)
                    if windows:
                        self.faults_injected[("stale", stream, m.symbol)] += windows
                    st.lost_from = None
                st.cursor = now
                if st.first is None:
                    st.first = now
            c = st.cursor
            d = self._next_disconnect(stream, m, c)
            e = self._next_event(stream, m, c, grid)
            if d is not None and d <= now and (e is None or e >= d):
                self._account_stale(stream, m, c, d - 1, grid)
                st.cursor = None
                st.lost_from = d - 1
                st.lost_reason = "disconnect"
                st.pending.clear()
                st.ohlcv_bucket = None  # a re-subscription starts from the current candle
                self.faults_injected[("disconnect", stream, m.symbol)] += 1
                raise ccxt.NetworkError(f"sim {self.id}: connection lost on {stream} {m.symbol} at {_iso(d)}")
            if e is not None and e <= now:
                hi = now if d is None or d > now else d - 1
                return st, c, hi
            targets = [x for x in (e, d) if x is not None]
            await self._wait_until(min(targets) if targets else now + HOUR_MS)

    def _account_stale(self, stream: str, m: _Market, lo: int, hi: int, grid: int) -> None:
        stale = self._stale(stream, m)
        if stale is None or hi <= lo:
            return
        windows = self._count_stale_windows(stale, lo, hi)
        if windows:
            self.faults_injected[("stale", stream, m.symbol)] += windows
        lost = self._count_stale_events(stream, m, lo, hi, grid)
        if lost:
            self.lost[("stale", stream, m.symbol)] += lost

    def _latest_grid(self, stream: str, m: _Market, lo: int, hi: int, grid: int) -> int:
        """The latest grid time in (lo, hi] outside stale windows (one exists: _due said an event is due)."""
        stale = self._stale(stream, m)
        t = hi // grid * grid
        while t > lo:
            if self._stale_end(stale, t) is None:
                return t
            t -= grid
        raise AssertionError("no due event")  # pragma: no cover - _due guarantees one

    def _malformed(self, stream: str, m: _Market, message: Any, kind: int) -> tuple[Any, str]:
        reason = _BAD_REASONS[kind]
        missing = _MISSING_FIELD[stream]
        if stream == "ohlcv":
            row = list(message)
            if reason == "price:nan":
                row[4] = float("nan")
            elif reason == "price:negative":
                row[4] = -abs(row[4])
            elif reason == "missing":
                row = row[:5]
            else:
                row[0] = row[0] + FUTURE_SKEW_MS
            bad = row
        else:
            bad = dict(message)
            bad["info"] = dict(message["info"])
            price_key = {"trades": "price", "tickers": "bid", "funding": "fundingRate"}[stream]
            missing = _MISSING_FIELD[stream]
            if stream == "funding" and "fundingRate" not in message:
                price_key, missing = "markPrice", "markPrice"  # a watch_mark_price ticker
            if reason == "price:nan":
                bad[price_key] = float("nan")
            elif reason == "price:negative":
                bad[price_key] = -abs(bad[price_key])
            elif reason == "missing":
                del bad[missing]
            else:
                bad["timestamp"] = bad["timestamp"] + FUTURE_SKEW_MS
                bad["datetime"] = _iso(bad["timestamp"])
        label = f"missing:{missing}" if reason == "missing" else reason
        return bad, label

    def _record_fault(self, kind: str, stream: str, symbol: str, label: str | None = None) -> None:
        """Count an injected message when it is sent (extras queued but never sent are not counted)."""
        self.faults_injected[(kind, stream, symbol)] += 1
        if label is not None:
            self.malformed_kinds[(label, stream, symbol)] += 1

    # -- watch ------------------------------------------------------------------------------------------
    async def watch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """New trades since the previous call (all of them, at most `batch_limit` per call), ascending."""
        m = await self._market(symbol)
        stale = self._stale("trades", m)
        while True:
            st, lo, hi = await self._due(("trades", symbol), "trades", m, 1)
            good: list[dict[str, Any]] = []
            flags: list[tuple[float, float, bool, int, int]] = []
            new_cursor = hi
            last: tuple[_Chunk, int] | None = None
            for chunk, hour, idx in self._trades_between(m, lo, hi):
                keep = idx[~self._stale_mask(stale, chunk.ts[idx])] if stale is not None else idx
                room = self.batch_limit - len(good)
                full = keep.size >= room
                keep = keep[:room]
                if keep.size:
                    good.extend(self._trades(m, chunk, hour, keep))
                    last = (chunk, int(keep[-1]))
                if chunk.draws is not None:
                    for i in keep.tolist():
                        d0, d1 = chunk.draws[i, :2].tolist()
                        pair = self._swaps_with_next(chunk, i)
                        flags.append((d0, d1, pair, int(chunk.bad_kind[i]), hour * TRADE_ID_HOUR + i))
                if full:
                    # The batch is full: the next call continues right after the last trade sent.
                    new_cursor = int(chunk.ts[keep[-1]])
                    break
            if last is not None and self._hold_back(m, stale, lo, *last):
                # Its out-of-order partner is not due yet: send the pair together, swapped, next time.
                chunk, k = last
                good.pop()
                flags.pop()
                new_cursor = int(chunk.ts[k]) - 1
                if not good:
                    await self._wait_until(int(chunk.ts[k + 1]))
                    continue
            self._account_stale("trades", m, lo, new_cursor, 1)
            st.cursor = new_cursor
            self.emitted[("trades", symbol)] += len(good)
            return self._trade_faults(m, good, flags)

    def _swaps_with_next(self, chunk: _Chunk, k: int) -> bool:
        """The out-of-order rule, local so it is the same whatever the batches: trade k and k + 1 (same hour)
        are sent swapped when k is drawn and k - 1 is not (so pairs never overlap)."""
        rate = self.faults.out_of_order_rate
        if not rate or chunk.draws is None or k + 1 >= chunk.ts.size:
            return False
        return bool(chunk.draws[k, 2] < rate and (k == 0 or chunk.draws[k - 1, 2] >= rate))

    def _hold_back(self, m: _Market, stale: tuple[int, int, int] | None, lo: int, chunk: _Chunk, k: int) -> bool:
        """Whether the batch's last trade waits for its swap partner (which must be deliverable at all)."""
        if not self._swaps_with_next(chunk, k):
            return False
        partner = int(chunk.ts[k + 1])
        if self._stale_end(stale, partner) is not None:
            return False
        disconnect = self._next_disconnect("trades", m, lo)
        return disconnect is None or partner < disconnect

    def _trade_faults(self, m: _Market, good: list[dict[str, Any]], flags: list[tuple]) -> list[dict[str, Any]]:
        f = self.faults
        if not (f.malformed_rate or f.duplicate_rate or f.out_of_order_rate):
            return good
        order = list(range(len(good)))
        if f.out_of_order_rate:
            for i in range(len(order) - 1):
                if flags[i][2] and flags[i + 1][4] == flags[i][4] + 1:
                    order[i], order[i + 1] = order[i + 1], order[i]
                    self._record_fault("out_of_order", "trades", m.symbol)
        out = []
        for i in order:
            out.append(good[i])
            d0, d1, _, kind, trade_key = flags[i]
            if d1 < f.duplicate_rate:
                out.append(dict(good[i]))
                self._record_fault("duplicate", "trades", m.symbol)
            if d0 < f.malformed_rate:
                bad, label = self._malformed("trades", m, good[i], kind)
                self._record_fault("malformed", "trades", m.symbol, label)
                hour, k = divmod(trade_key, TRADE_ID_HOUR)
                bad["id"] = str(hour * TRADE_ID_HOUR + MALFORMED_ID_OFFSET + k)
                out.append(bad)
        return out

    async def _watch_state(self, stream: str, method: str, symbol: str, grid: int, build: Any) -> Any:
        """One message of a latest-state stream (ticker, funding): pending injected ones first."""
        m = await self._market(symbol)
        key = (stream, symbol) if method == stream else (method, symbol)
        st = self._streams.setdefault(key, _Stream())
        if st.pending:
            await asyncio.sleep(0)
        if st.pending:  # re-checked: another caller of the same stream (bybit tickers + funding) may have taken it
            kind, label, message = st.pending.popleft()
            self._record_fault(kind, stream, symbol, label)
            return message
        st, lo, hi = await self._due(key, stream, m, grid)
        t = self._latest_grid(stream, m, lo, hi, grid)
        total = self._count_events(stream, m, lo, hi, grid) - self._count_stale_events(stream, m, lo, hi, grid)
        if total > 1:
            self.conflated[(stream, symbol)] += total - 1
        self._account_stale(stream, m, lo, hi, grid)
        st.cursor = hi
        message = build(m, t)
        self.emitted[(stream, symbol)] += 1
        self._state_faults(stream, m, st, message, t)
        st.last_msg = message
        return message

    def _state_faults(self, stream: str, m: _Market, st: _Stream, message: Any, t: int) -> None:
        f = self.faults
        if not (f.malformed_rate or f.duplicate_rate or f.out_of_order_rate):
            return
        base = (*self._fault_key(stream, m), t)
        if _unit(*base, 1) < f.malformed_rate:
            bad, label = self._malformed(stream, m, message, int(_unit(*base, 4) * len(_BAD_REASONS)))
            st.pending.append(("malformed", label, bad))
        if _unit(*base, 2) < f.duplicate_rate:
            st.pending.append(("duplicate", None, dict(message)))
        if st.last_msg is not None and _unit(*base, 3) < f.out_of_order_rate:
            st.pending.append(("out_of_order", None, st.last_msg))

    async def watch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """The latest ticker (bybit/hyperliquid perps carry their funding fields in `info`)."""
        return await self._watch_state("tickers", "tickers", symbol, self.ticker_interval_ms, self._ticker)

    async def watch_funding_rate(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """The current (predicted) funding-rate structure of a perp; works on every sim venue."""
        await self._require_swap(symbol)
        return await self._watch_state("funding", "funding", symbol, self.funding_update_ms, self._funding_structure)

    async def watch_mark_price(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """binance's markPrice stream: a ticker with markPrice/indexPrice and info r (rate), T (next time)."""
        if not self.has["watchMarkPrice"]:
            raise ccxt.NotSupported(f"sim {self.id}: watch_mark_price is not supported, like the real venue")
        await self._require_swap(symbol)
        return await self._watch_state(
            "funding", "mark_price", symbol, self.funding_update_ms, self._mark_price_structure
        )

    async def _require_swap(self, symbol: str) -> _Market:
        m = await self._market(symbol)
        if not m.swap:
            raise ccxt.BadSymbol(f"symbol: {symbol!r} is spot on {self.id}; funding exists for perps only")
        return m

    async def watch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict | None = None,
    ) -> list[list[float]]:
        """Candles updated since the previous call: closed ones (final) first, then the current one."""
        tf_ms = self.parse_timeframe(timeframe) * 1000
        m = await self._market(symbol)
        key = ("ohlcv", symbol) if timeframe == "1m" else (f"ohlcv:{timeframe}", symbol)
        st = self._streams.setdefault(key, _Stream())
        grid = self.ohlcv_update_ms
        st, lo, hi = await self._due(key, "ohlcv", m, grid)
        t = self._latest_grid("ohlcv", m, lo, hi, grid)
        total = self._count_events("ohlcv", m, lo, hi, grid) - self._count_stale_events("ohlcv", m, lo, hi, grid)
        if total > 1:
            self.conflated[("ohlcv", symbol)] += total - 1
        self._account_stale("ohlcv", m, lo, hi, grid)
        st.cursor = hi
        bucket = t // tf_ms * tf_ms
        rows: list[list[float]] = []
        if st.ohlcv_bucket is not None and st.ohlcv_bucket < bucket:
            # The bucket we were updating closed: send its final state (as the venue's last update would).
            stale = self._stale("ohlcv", m)
            first = max(st.ohlcv_bucket, bucket - MAX_LIMIT * tf_ms)
            for b in range(first, bucket, tf_ms):
                if self._stale_end(stale, b + tf_ms - 1) is None:
                    rows.append(self._candle(m, tf_ms, b, b + tf_ms - 1))
        rows.append(self._candle(m, tf_ms, bucket, t))
        st.ohlcv_bucket = bucket
        if limit:
            rows = rows[-int(limit) :]
        self.emitted[("ohlcv", symbol)] += len(rows)
        if len(rows) > 1:
            st.last_closed = rows[-2]
        self._ohlcv_faults(m, st, rows, t)
        return rows

    def _ohlcv_faults(self, m: _Market, st: _Stream, rows: list[list[float]], t: int) -> None:
        f = self.faults
        if not (f.malformed_rate or f.duplicate_rate or f.out_of_order_rate):
            return
        base = (*self._fault_key("ohlcv", m), t)
        current = rows[-1]
        if _unit(*base, 1) < f.malformed_rate:
            bad, label = self._malformed("ohlcv", m, current, int(_unit(*base, 4) * len(_BAD_REASONS)))
            rows.append(bad)
            self._record_fault("malformed", "ohlcv", m.symbol, label)
        if _unit(*base, 2) < f.duplicate_rate:
            rows.append(list(current))
            self._record_fault("duplicate", "ohlcv", m.symbol)
        if st.last_closed is not None and _unit(*base, 3) < f.out_of_order_rate:
            rows.append(list(st.last_closed))
            self._record_fault("out_of_order", "ohlcv", m.symbol)

    # -- unwatch ----------------------------------------------------------------------------------------
    def _unwatch(self, key: tuple[str, str]) -> None:
        """Drop a subscription: the next watch call subscribes afresh at the then-current time, and the
        events in between are counted in `lost[('unwatch', ...)]`."""
        st = self._streams.get(key)
        if st is None or st.cursor is None:
            return
        st.lost_from, st.lost_reason, st.cursor = st.cursor, "unwatch", None
        st.pending.clear()
        st.ohlcv_bucket = None

    async def un_watch_trades(self, symbol: str, params: dict | None = None) -> None:
        self._unwatch(("trades", symbol))

    async def un_watch_ticker(self, symbol: str, params: dict | None = None) -> None:
        self._unwatch(("tickers", symbol))

    async def un_watch_ohlcv(self, symbol: str, timeframe: str = "1m", params: dict | None = None) -> None:
        self._unwatch(("ohlcv", symbol) if timeframe == "1m" else (f"ohlcv:{timeframe}", symbol))

    async def un_watch_funding_rate(self, symbol: str, params: dict | None = None) -> None:
        self._unwatch(("funding", symbol))

    async def un_watch_mark_price(self, symbol: str, params: dict | None = None) -> None:
        self._unwatch(("mark_price", symbol))

    # -- history ----------------------------------------------------------------------------------------
    def _range(self, since: int | None, until: int | None, now: int) -> tuple[int, int]:
        lo = self.world.origin_ms if since is None else max(int(since), self.world.origin_ms)
        hi = now if until is None else min(int(until), now)
        return lo, hi

    @staticmethod
    def _limit(limit: int | None) -> int:
        if limit is None:
            return MAX_LIMIT
        if int(limit) < 1:
            raise ccxt.BadRequest(f"limit: {limit!r} must be >= 1")
        return min(int(limit), MAX_LIMIT)

    async def fetch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """Trades with since <= ts <= until (until defaults to now), ascending, at most `limit` (<= 1000).

        Without `since`: the latest `limit` trades up to now.
        """
        m = await self._market(symbol)
        await asyncio.sleep(0)
        now = self.milliseconds()
        n = self._limit(limit)
        lo, hi = self._range(since, (params or {}).get("until"), now)
        out: list[dict[str, Any]] = []
        if hi < lo:
            return out
        if since is None:
            hour = hi // HOUR_MS
            while hour * HOUR_MS + HOUR_MS > lo and len(out) < n:
                chunk = self._chunk(m, hour)
                j = int(np.searchsorted(chunk.ts, hi, side="right"))
                i = max(int(np.searchsorted(chunk.ts, lo, side="left")), j - (n - len(out)))
                out = self._trades(m, chunk, hour, np.arange(i, j)) + out
                hour -= 1
            return out
        for chunk, hour, idx in self._trades_between(m, lo - 1, hi):
            out.extend(self._trades(m, chunk, hour, idx[: n - len(out)]))
            if len(out) >= n:
                return out
        return out

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict | None = None,
    ) -> list[list[float]]:
        """Candles whose open time is in [since, until], at most `limit` (<= 1000); the current one is partial.

        Without `since`: the latest `limit` candles up to now.
        """
        tf_ms = self.parse_timeframe(timeframe) * 1000
        m = await self._market(symbol)
        await asyncio.sleep(0)
        now = self.milliseconds()
        n = self._limit(limit)
        origin = self.world.origin_ms
        until = (params or {}).get("until")
        last_bucket = min(now, int(until)) // tf_ms * tf_ms if until is not None else now // tf_ms * tf_ms
        if since is None:
            first = max(last_bucket - (n - 1) * tf_ms, -(-origin // tf_ms) * tf_ms)
        else:
            first = -(-max(int(since), origin) // tf_ms) * tf_ms
        out = []
        bucket = first
        while bucket <= last_bucket and len(out) < n:
            out.append(self._candle(m, tf_ms, bucket, min(bucket + tf_ms - 1, now)))
            bucket += tf_ms
        return out

    async def fetch_funding_rate_history(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """Settled rates with since <= fundingTime <= until (until defaults to now), ascending, <= 1000.

        Without `since`: the latest `limit` settlements. `info` carries fundingIntervalHours and markPrice.
        """
        m = await self._require_swap(symbol)
        await asyncio.sleep(0)
        now = self.milliseconds()
        n = self._limit(limit)
        v = m.venue.index
        lo, hi = self._range(since, (params or {}).get("until"), now)
        # The first interval must lie after the origin: premium samples exist only from there.
        lo = max(lo, self.world.origin_ms + 8 * HOUR_MS)
        times: list[int] = []
        if hi < lo:
            return []
        if since is None:
            t = self._next_settlement(v, m.a, hi)
            t = self._prev_settlement(v, m.a, t) if t > hi else t
            while t >= lo and len(times) < n:
                times.append(t)
                t = self._prev_settlement(v, m.a, t)
            times.reverse()
        else:
            t = self._next_settlement(v, m.a, lo - 1)
            while t <= hi and len(times) < n:
                times.append(t)
                t = self._next_settlement(v, m.a, t)
        out = []
        for t in times:
            _, _, running, interval_h = self._funding_parts(m, t)
            rate = self._rate(m, float(running[-1]), interval_h)
            mark, _ = self._mark_index(m, t)
            out.append(
                {
                    "info": {
                        "symbol": self.markets[symbol]["id"],
                        "fundingTime": t,
                        "fundingRate": f"{rate:.8f}",
                        "fundingIntervalHours": interval_h,
                        "markPrice": str(mark),
                    },
                    "symbol": symbol,
                    "fundingRate": rate,
                    "timestamp": t,
                    "datetime": _iso(t),
                }
            )
        return out

    async def fetch_funding_rate(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        m = await self._require_swap(symbol)
        await asyncio.sleep(0)
        return self._funding_structure(m, self.milliseconds())

    async def fetch_funding_rates(
        self, symbols: Sequence[str] | None = None, params: dict | None = None
    ) -> dict[str, dict[str, Any]]:
        if not self.markets:
            await self.load_markets()
        wanted = list(symbols) if symbols else [s for s in (self.requested_symbols or self.symbols) if ":" in s]
        return {s: await self.fetch_funding_rate(s) for s in wanted}

    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        m = await self._market(symbol)
        await asyncio.sleep(0)
        return self._ticker(m, self.milliseconds())
