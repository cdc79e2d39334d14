"""The simulated world: deterministic by seed and order-free, spot correlated across venues, premium
mean-reverting."""

from __future__ import annotations

import math

import numpy as np

from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.units import DAY_MS, HOUR_MS, MINUTE_MS

from .common import START_MS, run, sim, trade_key


# -- determinism ----------------------------------------------------------------------------------------
def test_same_seed_gives_same_history_and_another_seed_differs() -> None:
    since = START_MS - 3 * DAY_MS
    until = since + 20 * MINUTE_MS

    async def history(seed: int) -> tuple:
        ex = SimExchange("bybit", sim(seed=seed))
        trades = await ex.fetch_trades("SOL/USDT:USDT", since=since, params={"until": until})
        candles = await ex.fetch_ohlcv("SOL/USDT", "1m", since=since, limit=20)
        funding = await ex.fetch_funding_rate_history("SOL/USDT:USDT", since=since, limit=5)
        return [trade_key(t) for t in trades], candles, [f["fundingRate"] for f in funding]

    a, b, c = run(history(7)), run(history(7)), run(history(8))
    assert a == b
    assert len(a[0]) > 100
    assert a[0] != c[0] and a[1] != c[1]


def test_history_is_the_same_whichever_order_ranges_are_asked() -> None:
    since = START_MS - 10 * DAY_MS

    async def go(order: list[int]) -> dict[int, list]:
        ex = SimExchange("binance", sim())
        out = {}
        for k in order:
            out[k] = await ex.fetch_ohlcv("ETH/USDT", "1m", since=since + k * HOUR_MS, limit=30)
        return out

    forward, backward = run(go([0, 5, 40])), run(go([40, 5, 0]))
    assert forward == backward


# -- market model ---------------------------------------------------------------------------------------
def test_spot_is_correlated_across_venues_and_perp_premium_mean_reverts() -> None:
    since = START_MS - 5 * DAY_MS

    async def closes(venue: str, symbol: str) -> np.ndarray:
        ex = SimExchange(venue, sim())
        rows = await ex.fetch_ohlcv(symbol, "1m", since=since, limit=600)
        return np.array([r[4] for r in rows])

    binance = run(closes("binance", "BTC/USDT"))
    okx = run(closes("okx", "BTC/USDT"))
    hyper = run(closes("hyperliquid", "BTC/USDC"))
    for other in (okx, hyper):
        corr = np.corrcoef(np.diff(np.log(binance)), np.diff(np.log(other)))[0, 1]
        assert corr > 0.9
        assert np.max(np.abs(binance / other - 1)) < 0.002  # the same asset, a few bp apart

    ex = SimExchange("bybit", sim())
    run(ex.load_markets())
    times, premium = ex.premium_index("ETH/USDT:USDT", START_MS - 60 * DAY_MS, START_MS)
    hourly = premium.reshape(-1, 60).mean(axis=1)
    hours = times[::60] // HOUR_MS
    # The premium reverts towards a level that moves with regimes (3-day blocks): regress the next hour's
    # change on the deviation from the block's mean, away from block boundaries.
    blocks = hours // 72
    deviation = hourly - np.array([hourly[blocks == b].mean() for b in blocks])
    inside = (hours % 72 >= 24)[:-1] & (blocks[1:] == blocks[:-1])
    x, dx = deviation[:-1][inside], np.diff(hourly)[inside]
    slope, intercept = np.polyfit(x, dx, 1)
    residual = dx - (slope * x + intercept)
    stderr = math.sqrt(residual.var() / ((x - x.mean()) ** 2).sum())
    assert slope / stderr < -4  # a random walk would give a slope near 0
    assert -0.3 < slope < -0.03  # an hours-long half-life, as modelled
    assert abs(hourly.mean()) < 0.002
