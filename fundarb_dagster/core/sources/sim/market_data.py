"""Market data of the simulated venues: each hour of each market (book, trades, candles) and the ccxt
structures built from it (trades, tickers, candles).

A venue's spot mid is the shared index path plus small per-second noise; a perp's mid is `index x (1 +
premium)`. Bid/ask sit on the tick grid around the mid with a random spread (twice as wide on a perp in a
hot regime); takers buy at the ask and sell at the bid; trade times are uniform (unique milliseconds),
sizes log-normal. Trade ids are `absolute_hour * TRADE_ID_HOUR + k`. Closed candles come from the hour's
trades at once, a forming candle from the trades up to a time, so the two agree to the bit. The depth
behind the best bid and ask is `book.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ...units import HOUR_MS, MINUTE_MS
from .draws import LRU, iso, keyed_rng
from .faults import FaultPlan
from .funding import Funding
from .markets import TRADE_ID_HOUR, Chunk, Market
from .venues import ASSETS
from .world import HOT_SPREAD, LazyWorld, World


def _round(value: float, decimals: int) -> float:
    return round(float(value), decimals)


class MarketData:
    """Hours of market data per market (cached), and the ccxt structures of trades, tickers and candles."""

    def __init__(self, world: LazyWorld, seed: int, trades_per_s: float, funding: Funding, faults: FaultPlan) -> None:
        self._world = world
        self.seed = seed
        self.trades_per_s = trades_per_s
        self.funding = funding
        self.faults = faults
        self._chunks = LRU(48)

    @property
    def world(self) -> World:
        return self._world.get()

    # -- one hour of one market -----------------------------------------------------------------------
    def chunk(self, m: Market, h: int) -> Chunk:
        key = (m.symbol, h)
        cached = self._chunks.hit(key)
        if cached is not None:
            return cached
        world = self.world
        v = m.venue.index
        log_index = world.spot_seconds(m.a, h)
        index = np.exp(log_index) * m.multiplier
        gen = keyed_rng(self.seed, 5, m.key, h)
        noise = gen.standard_normal(3600) * (m.venue.noise_bps * 1e-4)
        half_spread = m.half_spread
        if m.swap:
            prem = world.premium_seconds(v, m.a, h)
            mid = index * (1.0 + prem)
            if world.hot(v, m.a, h):  # hot regimes widen the perp's book (and thin it: `book.py`)
                half_spread *= HOT_SPREAD
        else:
            mid = index * np.exp(noise)
        spread = np.maximum(m.tick, mid * 2 * half_spread * gen.lognormal(0.0, 0.35, 3600))
        bid_ticks = np.floor((mid - spread / 2) / m.tick)
        ask_ticks = bid_ticks + np.maximum(1.0, np.ceil(spread / m.tick))
        bid = np.round(bid_ticks * m.tick, m.decimals)
        ask = np.round(ask_ticks * m.tick, m.decimals)
        unit_value = mid * m.contract_size
        size_scale = ASSETS[m.asset].notional * 4 / unit_value
        bid_size = np.maximum(m.lot, np.round(size_scale * gen.lognormal(0.0, 0.8, 3600), m.lot_decimals))
        ask_size = np.maximum(m.lot, np.round(size_scale * gen.lognormal(0.0, 0.8, 3600), m.lot_decimals))
        n = int(gen.poisson(self.trades_per_s * 3600.0))
        n = min(n, 3_599_000)
        offsets = np.sort(gen.integers(0, HOUR_MS - n, n)) + np.arange(n)
        sec = offsets // 1000
        side = np.where(gen.random(n) < 0.5, 1, -1).astype(np.int8)
        price = np.where(side > 0, ask[sec], bid[sec])
        amount = ASSETS[m.asset].notional * gen.lognormal(0.0, 1.1, n) / unit_value[sec]
        amount = np.maximum(m.lot, np.round(amount, m.lot_decimals))
        start_ms = h * HOUR_MS
        ts = start_ms + offsets
        cum = np.concatenate(([0.0], np.cumsum(amount)))
        minute_idx = np.searchsorted(offsets, np.arange(61) * MINUTE_MS)
        mark = np.round(mid, m.decimals) if m.swap else mid
        chunk = Chunk(
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
        draws = self.faults.trade_draws(m, h, n)
        if draws is not None:
            chunk.draws, chunk.bad_kind = draws
        return self._chunks.put(key, chunk)

    def _final_candles(self, m: Market, chunk: Chunk) -> list[list[float]]:
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

    def _candle_rows(self, m: Market, chunk: Chunk, j: int, stop: int) -> list[float]:
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

    def candle(self, m: Market, tf_ms: int, bucket: int, upto: int) -> list[float]:
        """The candle of [bucket, bucket + tf) as known at time `upto` (inclusive)."""
        rows = []
        minute = bucket
        end = min(bucket + tf_ms, upto + 1)
        while minute < end:
            chunk = self.chunk(m, minute // HOUR_MS)
            j = (minute - chunk.start_ms) // MINUTE_MS
            if minute + MINUTE_MS - 1 <= upto:
                rows.append(chunk.candles[j])
            else:
                stop = int(np.searchsorted(chunk.ts, upto, side="right"))
                rows.append(self._candle_rows(m, chunk, j, max(stop, int(chunk.minute_idx[j]))))
            minute += MINUTE_MS
        if len(rows) == 1:
            return _volume_in_base(m, list(rows[0]))
        return _volume_in_base(
            m,
            [
                bucket,
                rows[0][1],
                max(r[2] for r in rows),
                min(r[3] for r in rows),
                rows[-1][4],
                _round(sum(r[5] for r in rows), m.lot_decimals),
            ],
        )

    # -- structures -------------------------------------------------------------------------------------
    def trades(self, m: Market, chunk: Chunk, hour: int, idx: np.ndarray) -> list[dict[str, Any]]:
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

    def ticker(self, m: Market, t: int) -> dict[str, Any]:
        chunk = self.chunk(m, t // HOUR_MS)
        s = (t - chunk.start_ms) // 1000
        stop = int(np.searchsorted(chunk.ts, t, side="right"))
        last = float(chunk.price[stop - 1]) if stop > 0 else _round(chunk.mid[0], m.decimals)
        bid, ask = float(chunk.bid[s]), float(chunk.ask[s])
        bid_size, ask_size = float(chunk.bid_size[s]), float(chunk.ask_size[s])
        mark = float(chunk.mark[s]) if m.swap else None
        index = float(chunk.index[s]) if m.swap else None
        venue = m.venue.id
        market_id = m.id
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
            state = self.funding.state(m, t)
            if venue == "bybit":
                info.update(
                    {
                        "markPrice": str(mark),
                        "indexPrice": str(index),
                        "fundingRate": f"{state['rate']:.8f}",
                        "nextFundingTime": str(state["T1"]),
                        "fundingIntervalHour": str(int(state["L"])),
                        "fundingCap": str(m.venue.cap(m.asset)),
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
            "datetime": iso(t),
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

    # -- trade times ----------------------------------------------------------------------------------
    def next_trade(self, m: Market, after: int) -> int | None:
        h = after // HOUR_MS
        for hour in range(h, h + 48):
            chunk = self.chunk(m, hour)
            i = int(np.searchsorted(chunk.ts, after, side="right"))
            if i < chunk.ts.size:
                return int(chunk.ts[i])
        return None

    def trades_between(self, m: Market, lo: int, hi: int) -> Iterator[tuple[Chunk, int, np.ndarray]]:
        """(chunk, hour, indices) of the trades with lo < ts <= hi, hour by hour (lazily)."""
        for hour in range(max(lo + 1, 0) // HOUR_MS, hi // HOUR_MS + 1):
            chunk = self.chunk(m, hour)
            i = int(np.searchsorted(chunk.ts, lo, side="right"))
            j = int(np.searchsorted(chunk.ts, hi, side="right"))
            if j > i:
                yield chunk, hour, np.arange(i, j)


def _volume_in_base(m: Market, candle: list[float]) -> list[float]:
    """ccxt gives a contract's candle volume in base units (okx `volCcy`), its trade amounts in contracts:
    the hour's volumes count contracts, so a candle leaves here with volume x contractSize."""
    if m.contract_size != 1.0:
        candle[5] = candle[5] * m.contract_size
    return candle
