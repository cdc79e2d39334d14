"""Performance metrics of equity curves, vectorized over a leading grid axis: arrays `(G, T)` in, `(G,)` out."""

from __future__ import annotations

import numpy as np

from fundarb_dagster.core.units import HOURS_PER_YEAR

METRIC_NAMES = (
    "total_return",
    "annual_return",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "time_in_market",
    "turnover",
    "trade_count",
    "avg_holding_h",
)


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Fractional drawdown from the running peak, `1 - equity / peak` (0 at new highs)."""
    peak = np.maximum.accumulate(equity, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, 1.0 - equity / peak, 1.0)


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """Simple returns per bar, `(G, T-1)`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diff(equity, axis=-1) / equity[..., :-1]


def performance(
    equity: np.ndarray,
    bar_h: float,
    in_market: np.ndarray,
    traded_notional: np.ndarray,
    entries: np.ndarray,
    held_pair_bars: np.ndarray,
) -> dict[str, np.ndarray]:
    """The metric table of each grid point.

    equity `(G, T)`; in_market `(G, T)` bool (any position open after the bar's decisions); traded_notional,
    entries, held_pair_bars `(G,)`. Returns are simple per bar; annualization uses `8760 / bar_h` bars a year;
    annual_return is geometric; Sharpe and Sortino have a zero risk-free rate; turnover is traded notional over
    mean equity, per year; avg_holding_h is held pair-hours per entry.
    """
    equity = np.atleast_2d(np.asarray(equity, dtype=float))
    periods = HOURS_PER_YEAR / bar_h
    years = max((equity.shape[-1] - 1) * bar_h / HOURS_PER_YEAR, 1e-12)
    r = bar_returns(equity)
    total = equity[:, -1] / equity[:, 0] - 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        annual = np.where(total > -1.0, np.sign(1.0 + total) * np.abs(1.0 + total) ** (1.0 / years) - 1.0, -1.0)
        mean = r.mean(axis=-1) if r.shape[-1] else np.zeros(len(equity))
        std = r.std(axis=-1, ddof=1) if r.shape[-1] > 1 else np.zeros(len(equity))
        downside = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2, axis=-1)) if r.shape[-1] else np.zeros(len(equity))
        sharpe = np.where(std > 0, mean / std * np.sqrt(periods), np.nan)
        sortino = np.where(downside > 0, mean / downside * np.sqrt(periods), np.nan)
        mdd = drawdown(equity).max(axis=-1)
        calmar = np.where(mdd > 0, annual / mdd, np.nan)
        turnover = traded_notional / equity.mean(axis=-1) / years
        avg_hold = np.where(entries > 0, held_pair_bars * bar_h / np.maximum(entries, 1), np.nan)
    return {
        "total_return": total,
        "annual_return": annual,
        "volatility": std * np.sqrt(periods),
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": mdd,
        "calmar": calmar,
        "time_in_market": np.asarray(in_market, dtype=float).mean(axis=-1),
        "turnover": turnover,
        "trade_count": np.asarray(entries, dtype=float),
        "avg_holding_h": avg_hold,
    }
