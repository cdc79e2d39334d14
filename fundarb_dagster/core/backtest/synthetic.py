"""A seeded synthetic Panel (random-walk prices, AR(1) funding with venue intervals) for tests and benchmarks.

Not a market model: it exists to exercise every accounting path (8h and 1h settlements, reverse funding,
spreads, volatile stretches that liquidate leveraged legs) at any size, fast and reproducibly.
"""

from __future__ import annotations

import numpy as np

from fundarb_dagster.core.units import HOUR_MS

from .accounting import annualize
from .panel import Market, Panel, make_market

VENUE_INTERVAL_H = {"binance": 8, "bybit": 8, "hyperliquid": 1}


def synthetic_panel(
    n_hours: int = 24 * 60,
    underlyings: tuple[str, ...] = ("BTC", "ETH"),
    venues: tuple[str, ...] = ("binance", "bybit", "hyperliquid"),
    seed: int = 7,
    vol_per_hour: float = 0.008,
    with_spot: bool = True,
    start_ms: int = 1_735_689_600_000,  # 2025-01-01T00:00Z
) -> Panel:
    rng = np.random.default_rng(seed)
    markets: list[Market] = []
    for u in underlyings:
        for v in venues:
            markets.append(make_market(v, f"{u}/USDT:USDT" if v != "hyperliquid" else f"{u}/USDC:USDC", u, "perp"))
            if with_spot and v != "hyperliquid":
                markets.append(make_market(v, f"{u}/USDT", u, "spot"))
    T, M = n_hours, len(markets)
    ts = start_ms + HOUR_MS * np.arange(T, dtype=np.int64)
    base = {}
    for k, u in enumerate(underlyings):
        # volatility regimes: a few calm and stormy stretches
        regime = np.where(rng.random(T) < 0.02, 4.0, 1.0)
        regime = np.convolve(regime, np.ones(12) / 12, mode="same")
        base[u] = (100.0 * (k + 1)) * np.exp(np.cumsum(rng.normal(0, vol_per_hour, T) * regime))
    mid = np.empty((T, M))
    ref = np.empty((T, M))
    hs = np.empty((T, M))
    for j, m in enumerate(markets):
        basis = rng.normal(0, 3e-4, T) if m.is_perp else np.zeros(T)
        mid[:, j] = base[m.underlying] * (1 + basis)
        ref[:, j] = base[m.underlying] * (1 + 0.5 * basis) if m.is_perp else mid[:, j]
        hs[:, j] = rng.uniform(0.5e-4, 3e-4, T)
    hs[rng.random((T, M)) < 0.05] = np.nan  # missing quotes: the bps model applies
    swing = np.abs(rng.normal(0, vol_per_hour * 0.7, (T, M)))
    hi, lo = ref * (1 + swing), ref * (1 - swing)
    cash = np.zeros((T, M))
    apr = np.full((T, M), np.nan)
    for j, m in enumerate(markets):
        if not m.is_perp:
            continue
        interval = VENUE_INTERVAL_H.get(m.exchange, 8)
        # AR(1) APR around a positive mean with sign changes; a settlement every `interval` hours
        level = 0.08 + ar1(rng.normal(0, 0.04, T), 0.97, 0.1 - 0.08)
        rate = level * interval / 8760.0
        settle = (ts % (interval * HOUR_MS) == 0) & (np.arange(T) > 0)
        cash[settle, j] = rate[settle] * ref[settle, j]
        # point-in-time prediction: the current rate with noise, known at t
        apr[:, j] = annualize(rate + rng.normal(0, 2e-5, T) * interval / 8, interval)
    return Panel(ts, markets, mid, hs, ref, hi, lo, cash, apr, settlements=int((cash != 0).sum()))


def ar1(shocks: np.ndarray, phi: float, y0: float, block: int = 256) -> np.ndarray:
    """`y[t] = phi * y[t-1] + shocks[t]` from `y[-1] = y0`, in closed form per block (no Python loop per step):
    within a block `y[k] = phi^(k+1) y_prev + phi^k * cumsum(shocks / phi^k)`."""
    out = np.empty(len(shocks))
    y = y0
    for lo in range(0, len(shocks), block):
        e = shocks[lo : lo + block]
        powers = phi ** np.arange(len(e))
        out[lo : lo + len(e)] = phi * powers * y + powers * np.cumsum(e / powers)
        y = out[lo + len(e) - 1]
    return out
