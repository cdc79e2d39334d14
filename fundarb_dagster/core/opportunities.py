"""Ranked carry trades: cash-and-carry on one venue and perp-perp across venues, net of costs.

For each candidate the hourly carry series (funding APR of the perp, or the spread of two perps) is fitted
with an AR(1), x_t - mu = phi (x_{t-1} - mu) + e_t, which says how fast a spread reverts to its mean:

    half_life_h        = -ln 2 / ln(phi)                                  (hours; inf when phi >= 1)
    expected_carry_apr = mu + (x_now - mu) * phi (1 - phi^H) / (H (1 - phi))   mean AR(1) forecast over H hours
    entry_cost_bps     = 2 * (taker fee leg 1 + taker fee leg 2) + 2 * (half-spread leg 1 + half-spread leg 2)
                         (round trip: both legs entered and exited, each crossing half the book)
    borrow_apr         = the spot borrow rate of a reverse cash-and-carry (short spot), else 0
    net_carry_apr      = |expected_carry_apr| - borrow_apr - entry_cost * 8760 / H
    break_even_h       = entry_cost / ((|expected_carry_apr| - borrow_apr) / 8760)   (inf when that is <= 0)

The trade direction follows the sign of the expected carry (short the perp that is paid funding). When
funding is negative, cash-and-carry turns around: long the perp, short the spot, which means borrowing the
asset. That row exists only where a borrow rate for the venue and asset is known (`BorrowRates`: configured
now, captured later), and is ranked net of it. Basis convergence P&L is not counted: the carry is what the
trade earns if prices do not move against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fundarb_dagster.core.units import HOURS_PER_YEAR

from .basis import underlying_of
from .venues import DEFAULT_FEES_BPS, VENUE_FACTS

# Base-tier taker fees in bps, from each venue's row in `core/venues.py` (every ccxt id of it). Users override
# them per venue in the opportunities asset's config; anything unknown uses the `*` entry.
DEFAULT_TAKER_FEES_BPS: dict[str, dict[str, float]] = {
    **{
        ccxt_id: {"spot": facts.fees_bps.spot_taker, "swap": facts.fees_bps.perp_taker}
        for facts in VENUE_FACTS.values()
        for ccxt_id in facts.ccxt_ids
    },
    "*": {"spot": DEFAULT_FEES_BPS.spot_taker, "swap": DEFAULT_FEES_BPS.perp_taker},
}

OPPORTUNITY_COLUMNS = [
    "as_of",
    "strategy",
    "underlying",
    "long_exchange",
    "long_symbol",
    "short_exchange",
    "short_symbol",
    "current_apr",
    "mean_apr",
    "expected_carry_apr",
    "entry_cost_bps",
    "borrow_apr",
    "net_carry_apr",
    "horizon_h",
    "break_even_h",
    "ar1_phi",
    "half_life_h",
    "same_sign_share",
    "n_obs",
    "rank",
]


@dataclass(frozen=True)
class FeeSchedule:
    """Taker fees in bps by venue and market type (`spot` / `swap`)."""

    taker_bps: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_TAKER_FEES_BPS)

    def fee_bps(self, exchange: str, market_type: str) -> float:
        venue = self.taker_bps.get(exchange) or self.taker_bps.get("*") or DEFAULT_TAKER_FEES_BPS["*"]
        if market_type not in venue:
            raise KeyError(f"fees: no {market_type!r} fee for exchange {exchange!r}")
        return float(venue[market_type])


@dataclass(frozen=True)
class BorrowRates:
    """What borrowing an asset on a venue's spot margin costs, APR (fraction), for shorting spot.

    `configured`: `{venue: {asset: apr}}` from run config, `'*'` for any other asset of the venue. `captured`:
    `(exchange, asset) -> apr` observed on the venue (build it with `with_captured` from rows `BORROW_COLUMNS`,
    e.g. the latest rows of a captured `borrow_rates` table); a captured rate wins over a configured one. An
    asset with neither has no known rate: no reverse cash-and-carry is ranked for it.
    """

    configured: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    captured: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        named = [(f"borrow_apr.{v}.{a}", r) for v, assets in self.configured.items() for a, r in assets.items()]
        named += [(f"borrow_rates {v} {a}", r) for (v, a), r in self.captured.items()]
        for name, rate in named:
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0):
                raise ValueError(f"{name}: {rate!r} must be a finite APR >= 0 (a fraction: 0.05 = 5 %)")

    def with_captured(self, rows: pd.DataFrame) -> BorrowRates:
        """These rates with captured ones (`BORROW_COLUMNS`; the last row of a key wins) on top."""
        captured = dict(self.captured)
        for row in rows[BORROW_COLUMNS].itertuples(index=False):
            captured[(str(row.exchange), str(row.asset))] = float(row.borrow_apr)
        return BorrowRates(self.configured, captured)

    def apr(self, exchange: str, asset: str) -> float | None:
        """The borrow APR of `asset` on `exchange`, None when unknown."""
        if (exchange, asset) in self.captured:
            return float(self.captured[(exchange, asset)])
        venue = self.configured.get(exchange, {})
        rate = venue.get(asset, venue.get("*"))
        return None if rate is None else float(rate)


BORROW_COLUMNS = ["exchange", "asset", "borrow_apr"]


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
    prev, curr = values[:-1], values[1:]
    var = float(np.var(prev))
    if var == 0.0:
        return Ar1Fit(float("nan"), float(values.mean()), len(values))
    phi = float(np.cov(prev, curr, bias=True)[0, 1] / var)
    c = float(curr.mean() - phi * prev.mean())
    mu = c / (1 - phi) if abs(1 - phi) > 1e-9 else float(values.mean())
    if not (0 < phi < 1):
        mu = float(values.mean())
    return Ar1Fit(phi, mu, len(values))


def half_life(phi: float) -> float:
    """Periods for a deviation to halve: -ln2/ln(phi); inf for phi >= 1 (no reversion), 0 for phi <= 0."""
    if not math.isfinite(phi):
        return float("nan")
    if phi >= 1:
        return float("inf")
    if phi <= 0:
        return 0.0
    return -math.log(2) / math.log(phi)


def expected_mean(x_now: float, mu: float, phi: float, horizon: int) -> float:
    """Mean of the AR(1) forecasts for the next `horizon` periods (x_now if phi is unknown or >= 1)."""
    if horizon < 1:
        raise ValueError(f"horizon: {horizon!r} must be >= 1 period")
    if not math.isfinite(phi) or phi >= 1:
        return x_now
    if phi <= 0:
        return mu
    return mu + (x_now - mu) * phi * (1 - phi**horizon) / (horizon * (1 - phi))


def same_sign_share(x: np.ndarray, sign: float) -> float:
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0 or sign == 0:
        return float("nan")
    return float(np.mean(np.sign(values) == np.sign(sign)))


def _evaluate(series: pd.Series, horizon_h: int) -> dict[str, float]:
    """Stats of one carry series (APR per hour, signed: positive = leg 'short' is paid)."""
    values = series.to_numpy(dtype=float)
    fit = fit_ar1(values)
    x_now = float(values[-1])
    expected = expected_mean(x_now, fit.mu if math.isfinite(fit.mu) else x_now, fit.phi, horizon_h)
    sign = 1.0 if expected >= 0 else -1.0
    return {
        "sign": sign,
        "current_apr": sign * x_now,
        "mean_apr": sign * float(np.nanmean(values)),
        "expected_carry_apr": abs(expected),
        "ar1_phi": fit.phi,
        "half_life_h": fit.half_life,
        "same_sign_share": same_sign_share(values, sign),
        "n_obs": len(values),
    }


def _net(stats: dict[str, float], cost_bps: float, borrow_apr: float, horizon_h: int) -> dict[str, float]:
    """The carry left after borrow and the round-trip cost spread over the horizon, and its break-even."""
    carry = stats["expected_carry_apr"] - borrow_apr
    cost = cost_bps / 1e4
    return {
        **stats,
        "entry_cost_bps": cost_bps,
        "borrow_apr": borrow_apr,
        "net_carry_apr": carry - cost * HOURS_PER_YEAR / horizon_h,
        "break_even_h": cost / (carry / HOURS_PER_YEAR) if carry > 0 else float("inf"),
    }


def rank_opportunities(
    hourly: pd.DataFrame,
    spreads_latest: pd.DataFrame,
    fees: FeeSchedule,
    horizon_h: int,
    as_of: pd.Timestamp,
    min_obs: int = 8,
    borrow: BorrowRates | None = None,
) -> pd.DataFrame:
    """Rank cash-and-carry and perp-perp trades by net carry APR (`OPPORTUNITY_COLUMNS`, rank 1 = best).

    `hourly`: per-perp hourly rates (`spreads.hourly_rates`: exchange, symbol, ts, funding_apr) over the
    look-back. `spreads_latest`: the latest half-spreads per instrument: exchange, symbol (perp),
    spot_symbol, perp_half_spread_bps, spot_half_spread_bps (from the basis table); a perp without a spot
    leg there gets no cash-and-carry row, and a perp without half-spreads is costed on fees alone.
    `borrow`: spot borrow rates; a reverse cash-and-carry (negative funding: short spot) is ranked only where
    it knows the rate (None: nowhere).
    """
    borrow = borrow if borrow is not None else BorrowRates()
    if horizon_h < 1:
        raise ValueError(f"horizon_h: {horizon_h!r} must be >= 1")
    rows: list[dict[str, object]] = []
    if hourly.empty:
        return pd.DataFrame(columns=OPPORTUNITY_COLUMNS)
    frame = hourly.copy()
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    wide = frame.pivot_table(index="ts", columns=["exchange", "symbol"], values="funding_apr", aggfunc="last")
    wide = wide.sort_index()
    costs = spreads_latest.set_index(["exchange", "symbol"]) if not spreads_latest.empty else pd.DataFrame()

    def perp_half_spread(exchange: str, symbol: str) -> float:
        if costs.empty or (exchange, symbol) not in costs.index:
            return 0.0
        value = costs.loc[(exchange, symbol), "perp_half_spread_bps"]
        return float(value) if pd.notna(value) else 0.0

    # Cash-and-carry: short the perp and hold spot when funding is positive; the reverse (long perp, short
    # spot) only where the spot borrow rate is known, net of it.
    for exchange, symbol in wide.columns:
        series = wide[(exchange, symbol)].dropna()
        if len(series) < min_obs or costs.empty or (exchange, symbol) not in costs.index:
            continue
        leg = costs.loc[(exchange, symbol)]
        spot_hs = float(leg["spot_half_spread_bps"]) if pd.notna(leg["spot_half_spread_bps"]) else 0.0
        cost_bps = 2 * (fees.fee_bps(exchange, "spot") + fees.fee_bps(exchange, "swap"))
        cost_bps += 2 * (spot_hs + perp_half_spread(exchange, symbol))
        stats = _evaluate(series, horizon_h)
        borrow_apr = 0.0 if stats["sign"] > 0 else borrow.apr(exchange, underlying_of(symbol))
        if borrow_apr is None:
            continue
        stats = _net(stats, cost_bps, borrow_apr, horizon_h)
        spot_symbol = str(leg["spot_symbol"])
        long_leg, short_leg = (spot_symbol, symbol) if stats["sign"] > 0 else (symbol, spot_symbol)
        rows.append(_row(as_of, "cash_carry", symbol, exchange, long_leg, exchange, short_leg, stats, horizon_h))

    # Perp-perp: short the venue paying more funding per hour, long the other, on common hours only.
    columns = sorted(wide.columns)
    for i, (ex_a, sym_a) in enumerate(columns):
        for ex_b, sym_b in columns[i + 1 :]:
            if ex_a == ex_b or underlying_of(sym_a) != underlying_of(sym_b):
                continue
            series = (wide[(ex_a, sym_a)] - wide[(ex_b, sym_b)]).dropna()
            if len(series) < min_obs:
                continue
            cost_bps = 2 * (fees.fee_bps(ex_a, "swap") + fees.fee_bps(ex_b, "swap"))
            cost_bps += 2 * (perp_half_spread(ex_a, sym_a) + perp_half_spread(ex_b, sym_b))
            stats = _net(_evaluate(series, horizon_h), cost_bps, 0.0, horizon_h)
            # series = a - b > 0: a pays more, so short a and long b.
            if stats["sign"] > 0:
                rows.append(_row(as_of, "perp_perp", sym_a, ex_b, sym_b, ex_a, sym_a, stats, horizon_h))
            else:
                rows.append(_row(as_of, "perp_perp", sym_a, ex_a, sym_a, ex_b, sym_b, stats, horizon_h))
    if not rows:
        return pd.DataFrame(columns=OPPORTUNITY_COLUMNS)
    out = pd.DataFrame(rows).sort_values("net_carry_apr", ascending=False, kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out[OPPORTUNITY_COLUMNS]


def _row(
    as_of: pd.Timestamp,
    strategy: str,
    symbol: str,
    long_exchange: str,
    long_symbol: str,
    short_exchange: str,
    short_symbol: str,
    stats: Mapping[str, float],
    horizon_h: int,
) -> dict[str, object]:
    return {
        "as_of": pd.Timestamp(as_of),
        "strategy": strategy,
        "underlying": underlying_of(symbol),
        "long_exchange": long_exchange,
        "long_symbol": long_symbol,
        "short_exchange": short_exchange,
        "short_symbol": short_symbol,
        "horizon_h": horizon_h,
        **{k: v for k, v in stats.items() if k != "sign"},
    }
