"""Funding as the venues document it, computed from the world's premium path.

Premium-index samples once a minute (the perp premium at each minute mark), averaged over the interval
(binance weights sample k by k, the others equally); then for binance/bybit/okx
`F = P + clamp(I - P, -0.05 %, +0.05 %)` with `I = 0.01 % x interval_h / 8`; hyperliquid computes the same
8-hour rate and pays 1/8 of it every hour (on the oracle price). `F` is clipped to the venue cap/floor
(`VenueSpec.cap(asset)`, also in market `info['fundingCap'/'fundingFloor']`) and rounded to 8 decimals.
The streamed (predicted) rate applies the same formula to the samples so far, so it converges to the settled
rate: the last prediction of an interval equals the settled rate, earlier ones differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...units import HOUR_MS, MINUTE_MS
from .draws import LRU, iso
from .markets import Market
from .venues import ASSET_NAMES, VenueSpec
from .world import LazyWorld, World


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
    return funding_from_average(premium, interval_h, style, cap, floor, interest_8h, clamp)


def funding_from_average(
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


class Funding:
    """Settlement schedule, settled and predicted rates, and the funding structures of one exchange object."""

    def __init__(self, world: LazyWorld) -> None:
        self._world = world
        self._cache = LRU(2048)

    @property
    def world(self) -> World:
        return self._world.get()

    # -- schedule -------------------------------------------------------------------------------------
    def spans(self, v: int, a: int) -> list[tuple[int | None, float]]:
        """[(valid_from_ms or None, interval_h)]: settlements T > valid_from use interval_h."""
        return self.world.interval_spans(v, a)

    def next_settlement(self, v: int, a: int, t: int) -> int:
        """The first settlement strictly after t."""
        spans = self.spans(v, a)
        hours = spans[0][1]
        for start, interval_h in spans[1:]:
            if start is not None and t >= start:
                hours = interval_h
        step = int(hours * HOUR_MS)
        return (t // step + 1) * step

    def interval_for(self, v: int, a: int, settlement: int) -> float:
        """The interval (hours) that ends at a settlement: the span with valid_from < T."""
        hours = self.spans(v, a)[0][1]
        for start, interval_h in self.spans(v, a)[1:]:
            if start is not None and settlement > start:
                hours = interval_h
        return hours

    def prev_settlement(self, v: int, a: int, settlement: int) -> int:
        return settlement - int(self.interval_for(v, a, settlement) * HOUR_MS)

    def settlement_times(self, m: Market, lo: int, hi: int, n: int, latest: bool) -> list[int]:
        """Up to n settlement times in [lo, hi], ascending: the first n, or with `latest` the last n."""
        v = m.venue.index
        times: list[int] = []
        if latest:
            t = self.next_settlement(v, m.a, hi)
            t = self.prev_settlement(v, m.a, t) if t > hi else t
            while t >= lo and len(times) < n:
                times.append(t)
                t = self.prev_settlement(v, m.a, t)
            times.reverse()
        else:
            t = self.next_settlement(v, m.a, lo - 1)
            while t <= hi and len(times) < n:
                times.append(t)
                t = self.next_settlement(v, m.a, t)
        return times

    def market_info(self, venue: VenueSpec, a: int, now: int) -> dict[str, Any]:
        """The funding fields of a perp market's `info`: interval now and its history, cap, formula."""
        v = venue.index
        spans = self.spans(v, a)
        asset = ASSET_NAMES[a]
        return {
            "fundingIntervalHours": self.interval_for(v, a, self.next_settlement(v, a, now)),
            "fundingIntervalHistory": [
                [self.world.origin_ms if start is None else start, hours] for start, hours in spans
            ],
            "fundingCap": venue.cap(asset),
            "fundingFloor": -venue.cap(asset),
            "fundingStyle": venue.funding_style,
            "premiumAverage": venue.premium_average,
            "interestRate8h": venue.interest_8h,
            "fundingClamp": venue.clamp,
        }

    # -- rates ----------------------------------------------------------------------------------------
    def _interval_premiums(self, m: Market, settlement: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Premium samples (minute marks in [T - L, T)) with their times, and L in hours."""
        v = m.venue.index
        interval_h = self.interval_for(v, m.a, settlement)
        begin = settlement - int(interval_h * HOUR_MS)
        hours = range(begin // HOUR_MS, settlement // HOUR_MS)
        samples = np.concatenate([self.world.premium_minutes(v, m.a, h) for h in hours])
        times = begin + np.arange(samples.size, dtype=np.int64) * MINUTE_MS
        return times, samples, interval_h

    def parts(self, m: Market, settlement: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(sample times, samples, running average premium, interval_h) of the interval ending at a settlement."""
        key = (m.symbol, settlement)
        cached = self._cache.hit(key)
        if cached is not None:
            return cached
        times, samples, interval_h = self._interval_premiums(m, settlement)
        weights = np.arange(1, samples.size + 1, dtype=np.float64)
        if m.venue.premium_average != "weighted":
            weights = np.ones(samples.size)
        running = np.cumsum(weights * samples) / np.cumsum(weights)
        return self._cache.put(key, (times, samples, running, interval_h))

    def rate(self, m: Market, premium: float, interval_h: float) -> float:
        spec = m.venue
        cap = spec.cap(m.asset)
        return funding_from_average(premium, interval_h, spec.funding_style, cap, -cap, spec.interest_8h, spec.clamp)

    def settled_rate(self, m: Market, settlement: int) -> float:
        """The settled rate at a settlement, by the pure formula on the interval's samples."""
        times, samples, _, interval_h = self.parts(m, settlement)
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

    def premium_index(self, m: Market, since: int, until: int) -> tuple[np.ndarray, np.ndarray]:
        """The premium-index samples (minute marks in [since, until)) funding is computed from."""
        first = (since + MINUTE_MS - 1) // MINUTE_MS * MINUTE_MS
        hours = range(first // HOUR_MS, (until - 1) // HOUR_MS + 1)
        samples = np.concatenate([self.world.premium_minutes(m.venue.index, m.a, h) for h in hours])
        times = hours[0] * HOUR_MS + np.arange(samples.size, dtype=np.int64) * MINUTE_MS
        keep = (times >= since) & (times < until)
        return times[keep], samples[keep]

    def mark_index(self, m: Market, t: int) -> tuple[float, float]:
        """Mark and index price of a perp at t from the world paths (no trade generation)."""
        h = t // HOUR_MS
        s = (t - h * HOUR_MS) // 1000
        index = np.exp(self.world.spot_seconds(m.a, h)[s : s + 1]) * m.multiplier
        mid = index * (1.0 + self.world.premium_seconds(m.venue.index, m.a, h)[s : s + 1])
        return float(np.round(mid, m.decimals)[0]), float(np.round(index, m.decimals)[0])

    def state(self, m: Market, t: int) -> dict[str, Any]:
        """What is known at t: the next settlement T1, the predicted rate, the last settled one, intervals."""
        v = m.venue.index
        t1 = self.next_settlement(v, m.a, t)
        times, samples, running, interval_h = self.parts(m, t1)
        known = int(np.searchsorted(times, t, side="right"))
        premium = float(running[known - 1])
        rate = self.rate(m, premium, interval_h)
        t0 = t1 - int(interval_h * HOUR_MS)
        prev_parts = self.parts(m, t0)
        previous = self.rate(m, float(prev_parts[2][-1]), prev_parts[3])
        next_l = self.interval_for(v, m.a, t1 + 1)
        return {
            "T1": t1,
            "T0": t0,
            "L": interval_h,
            "rate": rate,
            "premium": float(samples[known - 1]),
            "previous": previous,
            "next_ts": t1 + int(next_l * HOUR_MS),
        }

    # -- ccxt structures ------------------------------------------------------------------------------
    def structure(self, m: Market, t: int) -> dict[str, Any]:
        """ccxt's funding-rate structure at t (okx's payload in `info`)."""
        state = self.state(m, t)
        mark, index = self.mark_index(m, t)
        interval = f"{state['L']:g}h"
        interest = m.venue.interest_8h * state["L"] / 8.0
        info = {
            "instId": m.id,
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
            "datetime": iso(t),
            "fundingRate": state["rate"],
            "fundingTimestamp": state["T1"],
            "fundingDatetime": iso(state["T1"]),
            "nextFundingRate": None,
            "nextFundingTimestamp": state["next_ts"],
            "nextFundingDatetime": iso(state["next_ts"]),
            "previousFundingRate": state["previous"],
            "previousFundingTimestamp": state["T0"],
            "previousFundingDatetime": iso(state["T0"]),
            "interval": interval,
        }

    def mark_price_structure(self, m: Market, t: int) -> dict[str, Any]:
        """A `watch_mark_price` ticker: binance's markPriceUpdate in `info` (rate r, next time T), or okx's."""
        state = self.state(m, t)
        mark, index = self.mark_index(m, t)
        if m.venue.id == "okx":
            info: dict[str, Any] = {"instType": "SWAP", "instId": m.id, "markPx": str(mark), "ts": str(t)}
        else:
            info = {"e": "markPriceUpdate", "E": t, "s": m.id, "p": str(mark), "i": str(index), "P": str(mark)}
            info.update({"r": f"{state['rate']:.8f}", "T": state["T1"]})
        ticker = dict.fromkeys(
            ("high", "low", "bid", "bidVolume", "ask", "askVolume", "vwap", "open", "close", "last"), None
        )
        ticker.update(dict.fromkeys(("previousClose", "change", "percentage", "average"), None))
        ticker.update({"baseVolume": None, "quoteVolume": None})
        ticker.update({"symbol": m.symbol, "timestamp": t, "datetime": iso(t), "markPrice": mark, "indexPrice": index})
        ticker["info"] = info
        return ticker

    def history_row(self, m: Market, t: int) -> dict[str, Any]:
        """One `fetch_funding_rate_history` row: the settlement at t (`info`: interval hours, mark price)."""
        _, _, running, interval_h = self.parts(m, t)
        rate = self.rate(m, float(running[-1]), interval_h)
        mark, _ = self.mark_index(m, t)
        return {
            "info": {
                "symbol": m.id,
                "fundingTime": t,
                "fundingRate": f"{rate:.8f}",
                "fundingIntervalHours": interval_h,
                "markPrice": str(mark),
            },
            "symbol": m.symbol,
            "fundingRate": rate,
            "timestamp": t,
            "datetime": iso(t),
        }
