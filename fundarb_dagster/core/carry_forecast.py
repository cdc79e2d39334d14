"""The carry a spread is expected to pay over a holding horizon, and how wrong that forecast was on past data.

`x_1 .. x_n` is the hourly carry (APR) over the look-back, `x_n` the latest hour, `H` the horizon in hours:

    mean_apr           mu = mean(x)                                    the long-run level it reverts to
    run_h              r  = trailing hours on the same side of mu as x_n    how long the deviation has lasted
    run_apr            m  = mean of those r hours                      the deviation's size over its run
    phi                   = AR(1) coefficient by OLS (`fit_ar1`), clipped to [0, 1] (unknown: 0)
    path                  x^(n + h) = mu + (m - mu) phi^h  for h <= r,  mu  for h > r
    path mean          p  = mean of the path over h = 1..H = mu + w (m - mu),
                       w  = sum of phi^h over h = 1..min(r, H), / H   (<= r / H, and <= the AR(1)'s own weight)
    recent_median_apr  R  = median of the last `recent_h` hours (72: three days)
    expected              = p limited to the range between 0 and R

Shrunk toward the long-run mean: the deviation enters with its run's average (a spike at the end of a long
run moves `m` by spike / r) and is expected to last no longer than it has lasted so far, decaying as the AR(1)
says while it does, so a one-hour deviation moves `p` by at most 1 / H of its size. Capped by recent
persistence: the forecast never promises more than the carry's median over the last days, nor the side of
zero those days did not pay (a mean lifted by a regime that has ended is not expected back; a median ignores
single-hour spikes). The AR(1) mean forecast from the last hour, `mu + (x_n - mu) mean(phi^h)`
(`expected_mean`), which fundarb used before, extrapolates a one-hour spike over the whole horizon when phi is
near or above 1.

`forecast_errors` replays the forecast at past hours of a series (only the hours before each origin are
used) against the mean carry realized over the next H hours, beside the last-hour AR(1) forecast and the
plain mean, so the metadata can show what each would have got wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

ERROR_COLUMNS = ["origin", "expected", "last_hour_ar1", "mean_only", "realized"]


@dataclass(frozen=True)
class Ar1Fit:
    phi: float
    mu: float
    n: int

    @property
    def half_life(self) -> float:
        return half_life(self.phi)


def fit_ar1(x: np.ndarray) -> Ar1Fit:
    """OLS fit of x_t = c + phi x_{t-1} + e; mu = c / (1 - phi) (the sample mean when phi is ~1)."""
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 3:
        return Ar1Fit(float("nan"), float(np.mean(values)) if len(values) else float("nan"), len(values))
    n = len(values)
    prev, curr = values[:-1], values[1:]
    # sums and dot products: np.mean/np.cov overheads dominate on the few hundred hours of a look-back, and the
    # forecast errors fit thousands of windows
    total = float(values.sum())
    mean_prev, mean_curr = (total - values[-1]) / (n - 1), (total - values[0]) / (n - 1)
    dev = prev - mean_prev
    var = float(dev @ dev)
    if var == 0.0:
        return Ar1Fit(float("nan"), total / n, n)
    phi = float(dev @ (curr - mean_curr)) / var
    c = mean_curr - phi * mean_prev
    mu = c / (1 - phi) if abs(1 - phi) > 1e-9 else total / n
    if not (0 < phi < 1):
        mu = total / n
    return Ar1Fit(phi, float(mu), n)


def half_life(phi: float) -> float:
    """Periods for a deviation to halve: -ln2/ln(phi); inf for phi >= 1 (no reversion), 0 for phi <= 0."""
    if not math.isfinite(phi):
        return float("nan")
    if phi >= 1:
        return float("inf")
    if phi <= 0:
        return 0.0
    return -math.log(2) / math.log(phi)


def persistence_weight(phi: float, horizon: int, run: int | None = None) -> float:
    """Mean over the next `horizon` periods of the share of today's deviation still there: `phi^h` for the first
    `run` periods (None: all of them), 0 after; phi clipped to [0, 1], unknown counts as 0."""
    if horizon < 1:
        raise ValueError(f"horizon: {horizon!r} must be >= 1 period")
    k = horizon if run is None else min(max(run, 0), horizon)
    p = min(max(phi, 0.0), 1.0) if math.isfinite(phi) else 0.0
    if p == 1.0:
        return k / horizon
    return p * (1 - p**k) / (horizon * (1 - p))


def expected_mean(x_now: float, mu: float, phi: float, horizon: int) -> float:
    """Mean of the AR(1) forecasts from the last value for the next `horizon` periods (x_now if phi is unknown or
    >= 1): the forecast `forecast_carry` replaces, kept to show its error beside it."""
    if horizon < 1:
        raise ValueError(f"horizon: {horizon!r} must be >= 1 period")
    if not math.isfinite(phi) or phi >= 1:
        return x_now
    return mu + (x_now - mu) * persistence_weight(phi, horizon)


def trailing_run(x: np.ndarray, level: float) -> int:
    """Trailing values of `x` strictly on the same side of `level` as the last one (0 when it sits on it)."""
    side = np.sign(np.asarray(x, dtype=float) - level)
    if len(side) == 0 or side[-1] == 0:
        return 0
    other = np.flatnonzero(side != side[-1])
    return len(side) - 1 - int(other[-1]) if len(other) else len(side)


RECENT_H = 72  # hours whose median caps the forecast


@dataclass(frozen=True)
class CarryForecast:
    expected: float  # mean carry expected over the horizon (signed, in the series' units)
    mean: float  # mu, the look-back mean
    run: float  # m, the current run's mean
    run_h: int  # r, hours the current deviation has lasted
    weight: float  # w, the path's mean share of the deviation
    path: float  # p, the path's mean before the cap
    recent_median: float  # R, the cap
    fit: Ar1Fit


def forecast_carry(x: np.ndarray, horizon: int, recent_h: int = RECENT_H) -> CarryForecast:
    """The forecast of the module doc for one hourly series (NaN-free, oldest first)."""
    values = np.asarray(x, dtype=float)
    if len(values) == 0:
        raise ValueError("x: no hours to forecast from")
    if recent_h < 1:
        raise ValueError(f"recent_h: {recent_h!r} must be >= 1 hour")
    fit = fit_ar1(values)
    mu = float(values.sum()) / len(values)
    run = trailing_run(values, mu)
    level = float(values[len(values) - run :].mean()) if run else mu
    weight = persistence_weight(fit.phi, horizon, run)
    path = mu + weight * (level - mu)
    cap = float(np.median(values[-recent_h:]))
    expected = min(max(path, min(0.0, cap)), max(0.0, cap))
    return CarryForecast(expected, mu, level, run, weight, path, cap, fit)


def forecast_errors(
    x: np.ndarray, horizon: int, lookback: int, min_obs: int, step: int = 1, recent_h: int = RECENT_H
) -> pd.DataFrame:
    """The forecasts made at past hours `i` (every `step`-th, with at least `min_obs` hours of history and a
    full horizon after it) from the `lookback` hours before `i`, and the mean carry realized over
    `x[i : i + horizon]` (`ERROR_COLUMNS`; origin = i, the count of hours known)."""
    values = np.asarray(x, dtype=float)
    rows = []
    for i in range(max(min_obs, 1), len(values) - horizon + 1, max(step, 1)):
        history = values[max(0, i - lookback) : i]
        f = forecast_carry(history, horizon, recent_h)
        mu_ar1 = f.fit.mu if math.isfinite(f.fit.mu) else f.mean
        rows.append(
            (
                i,
                f.expected,
                expected_mean(float(history[-1]), mu_ar1, f.fit.phi, horizon),
                f.mean,
                float(values[i : i + horizon].mean()),
            )
        )
    return pd.DataFrame(rows, columns=ERROR_COLUMNS)
