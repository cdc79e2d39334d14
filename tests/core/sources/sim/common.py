"""Helpers shared by the simulator's tests: a fast SimConfig, and paging/collecting like a ccxt user.

Every test drives a real SimExchange through its ccxt.pro-shaped async methods at a high sim speed, and
checks numbers against an independent computation (numpy/plain Python) or against the sim's own history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ccxt
import numpy as np

from fundarb_dagster.core.config import FaultConfig, SimConfig
from fundarb_dagster.core.instruments import Instrument, InstrumentRegistry
from fundarb_dagster.core.sources.sim import VENUES, SimExchange, funding_rate_from_premiums
from fundarb_dagster.core.units import HOUR_MS

START = "2026-11-01T00:00:00Z"
START_MS = SimConfig(start=START).start_ms


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sim(seed: int = 7, speed: float = 20_000.0, faults: FaultConfig | None = None) -> SimConfig:
    return SimConfig(seed=seed, speed=speed, start=START, faults=faults or FaultConfig())


async def collect_trades(
    ex: SimExchange, symbol: str, wall_s: float, enough: Callable[[], bool] | None = None, bound_s: float = 120.0
) -> tuple[list[dict], int]:
    """watch_trades for `wall_s` of wall time, and on until `enough()` holds when given (at most `bound_s`: a
    loaded machine runs the simulator slower, and a test needs so many events, not so many seconds); returns the
    messages and the number of NetworkErrors (reconnects)."""
    out: list[dict] = []
    errors = 0
    start = time.monotonic()

    def more() -> bool:
        elapsed = time.monotonic() - start
        return elapsed < wall_s or (enough is not None and not enough() and elapsed < bound_s)

    while more():
        try:
            out.extend(await ex.watch_trades(symbol))
        except ccxt.NetworkError:
            errors += 1
    return out, errors


async def fetch_all_trades(ex: SimExchange, symbol: str, since: int, until: int) -> list[dict]:
    """Page through fetch_trades like a ccxt user: since = last timestamp + 1."""
    out: list[dict] = []
    cursor = since
    while True:
        page = await ex.fetch_trades(symbol, since=cursor, limit=1000, params={"until": until})
        out.extend(page)
        if len(page) < 1000:
            return out
        cursor = page[-1]["timestamp"] + 1


def sim_perp(venue: str, symbol: str, config: SimConfig) -> tuple[SimExchange, Instrument, Any]:
    """A loaded SimExchange, the perp's registry instrument and its simulated market (asked without a clock)."""
    ex = SimExchange(venue, config, symbols=[symbol])
    asyncio.run(ex.load_markets())
    registry = InstrumentRegistry()
    registry.add_markets(venue, ex.markets, [symbol])
    return ex, registry.get(venue, symbol), ex._m[symbol]  # noqa: SLF001 - the simulated market itself


def trade_key(t: dict) -> tuple:
    return (t["id"], t["timestamp"], t["price"], t["amount"], t["side"])


async def fetch_all_funding(ex: SimExchange, symbol: str, since: int, until: int | None = None) -> list[dict]:
    out: list[dict] = []
    while True:
        page = await ex.fetch_funding_rate_history(symbol, since=since, limit=100, params={"until": until})
        out.extend(page)
        if len(page) < 100:
            return out
        since = page[-1]["timestamp"] + 1


def reference_by_hand(ex: SimExchange, symbol: str, t: int, oracle: bool) -> float:
    """The mark (index x (1 + premium)) or the oracle (index) at t, from the world's paths, rounded to the tick."""
    m = ex._m[symbol]
    h, s = t // HOUR_MS, (t % HOUR_MS) // 1000
    index = float(np.exp(ex.world.spot_seconds(m.a, h)[s])) * m.multiplier
    price = index if oracle else index * (1 + float(ex.world.premium_seconds(m.venue.index, m.a, h)[s]))
    return round(price, m.decimals)


def settled_rate_by_hand(ex: SimExchange, symbol: str, t: int, interval_h: float) -> float:
    """The venue's documented formula on the interval's premium-index samples."""
    spec = VENUES[ex.id]
    asset = ex._m[symbol].asset
    _, samples = ex.premium_index(symbol, t - int(interval_h * HOUR_MS), t)
    return funding_rate_from_premiums(
        samples,
        interval_h=interval_h,
        style=spec.funding_style,
        average=spec.premium_average,
        cap=spec.cap(asset),
        floor=-spec.cap(asset),
    )
