"""Ranked carry trades: cash-and-carry on one venue and perp-perp across venues, net of costs.

For each candidate the hourly carry series (funding APR of the perp, or the spread of two perps) over the
look-back gives the expected carry over the horizon H (`core.carry_forecast.forecast_carry`: the look-back
mean, plus the current deviation at its run's average, decaying as its AR(1) says for at most as many hours as
it has lasted), and its persistence:

    expected_carry_apr = mean over H of the path mean_apr + (run_apr - mean_apr) phi^h, h <= run_h
                         (mean_apr after), limited to between 0 and recent_median_apr (the median of the
                         last `recent_h` hours): carry_forecast's module doc
    half_life_h        = -ln 2 / ln(phi) of the AR(1) fit                 (hours; inf when phi >= 1)
    entry_cost_bps     = 2 * (taker fee leg 1 + taker fee leg 2) + 2 * (half-spread leg 1 + half-spread leg 2)
                         (round trip: both legs entered and exited, each crossing half the book): the flat
                         model; where both legs have a captured book, the round trip walked on the books at
                         `CapacityRule.trade_notional_usd` per leg instead (`core.capacity`; cost_source says
                         which: `book` or `flat`)
    capacity_usd       = the largest notional per leg whose round trip (book walks + fees) stays within
                         `CapacityRule.share` of the carry expected over H (`core.capacity.capacity`; NaN without
                         books); capacity_net_carry_apr the net carry at that size
    borrow_apr         = the spot borrow rate of a reverse cash-and-carry (short spot), else 0: the captured rate
                         in force at as_of (`borrow_rates`) where there is one, else the configured one
                         (borrow_source: captured, configured, or none for a trade that borrows nothing)
    net_carry_apr      = |expected_carry_apr| - borrow_apr - entry_cost * 8760 / H
    break_even_h       = entry_cost / ((|expected_carry_apr| - borrow_apr) / 8760)   (inf when that is <= 0)
    forecast_mae_apr   = mean |forecast - realized mean carry over the next H hours| at past hours of the
                         candidate's own series (`carry_forecast.forecast_errors`), forecast_max_err_apr the
                         largest; last_hour_* the same for the AR(1) forecast from the last hour (what the
                         ranking used before: it extrapolated a spike in the last hour over the horizon)

The trade direction follows the sign of the expected carry (short the perp that is paid funding). When
funding is negative, cash-and-carry turns around: long the perp, short the spot, which means borrowing the
asset. That row exists only where a borrow rate for the venue and asset is known (`BorrowRates`: captured in
`borrow_rates` at the as-of time, else configured), and is ranked net of it. Basis convergence P&L is not
counted: the carry is what the trade earns if prices do not move against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fundarb_dagster.core.units import HOURS_PER_YEAR

from .basis import underlying_of
from .capacity import LegBook, capacity, carry_bps, round_trip_bps
from .carry_forecast import RECENT_H, forecast_carry, forecast_errors
from .fees import FeeTable
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
    "run_apr",
    "run_h",
    "recent_median_apr",
    "expected_carry_apr",
    "entry_cost_bps",
    "borrow_apr",
    "borrow_source",
    "net_carry_apr",
    "horizon_h",
    "break_even_h",
    "ar1_phi",
    "half_life_h",
    "same_sign_share",
    "n_obs",
    "forecast_mae_apr",
    "forecast_max_err_apr",
    "last_hour_mae_apr",
    "last_hour_max_err_apr",
    "error_origins",
    "cost_source",
    "capacity_usd",
    "capacity_net_carry_apr",
    "capacity_capped",
    "rank",
]


@dataclass(frozen=True)
class CapacityRule:
    """What capacity means: the largest notional per leg whose round-trip cost stays within `share` of the
    expected carry over the horizon; `trade_notional_usd`, the per-leg size `entry_cost_bps` is walked at."""

    share: float = 0.5
    trade_notional_usd: float = 10_000.0

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"capacity share: {self.share!r} must be in (0, 1]")
        if not self.trade_notional_usd > 0:
            raise ValueError(f"trade_notional_usd: {self.trade_notional_usd!r} must be > 0")


@dataclass(frozen=True)
class FeeSchedule:
    """Taker fees in bps by venue and market type (`spot` / `swap`): the dated fee in force at `at_ms` for the
    venue's tier where the config has one (`core.fees.FeeTable`), else `taker_bps`."""

    taker_bps: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_TAKER_FEES_BPS)
    dated: FeeTable | None = None
    at_ms: int | None = None

    def fee_bps(self, exchange: str, market_type: str) -> float:
        if self.dated is not None and self.at_ms is not None:
            _, taker, source = self.dated.fee_at(exchange, market_type, self.at_ms)
            if source == "config":
                return taker
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
        return self.quote(exchange, asset)[0]

    def quote(self, exchange: str, asset: str) -> tuple[float | None, str]:
        """The borrow APR of `asset` on `exchange` and where it comes from: `captured`, `configured` or `none`."""
        if (exchange, asset) in self.captured:
            return float(self.captured[(exchange, asset)]), "captured"
        venue = self.configured.get(exchange, {})
        rate = venue.get(asset, venue.get("*"))
        return (None, "none") if rate is None else (float(rate), "configured")


BORROW_COLUMNS = ["exchange", "asset", "borrow_apr"]


def same_sign_share(x: np.ndarray, sign: float) -> float:
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0 or sign == 0:
        return float("nan")
    return float(np.mean(np.sign(values) == np.sign(sign)))


@dataclass(frozen=True)
class ForecastWindow:
    """Which hours the forecast reads and where it is replayed. `lookback_h`: the hours before `as_of` it reads
    (None: all given); `recent_h`: the hours whose median caps it; `error_step_h`: every how many past hours it
    is replayed to measure its error."""

    lookback_h: int | None = None
    recent_h: int = RECENT_H
    error_step_h: int = 1

    def __post_init__(self) -> None:
        for name in ("lookback_h", "recent_h", "error_step_h"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: {value!r} must be >= 1 hour")


def _evaluate(
    history: pd.Series, recent: pd.Series, horizon_h: int, window: ForecastWindow, min_obs: int
) -> dict[str, float]:
    """Stats of one carry series (APR per hour, signed: positive = leg 'short' is paid): the forecast from
    `recent` (the look-back), its errors replayed over `history` (the look-back and the hours before it)."""
    values = recent.to_numpy(dtype=float)
    f = forecast_carry(values, horizon_h, window.recent_h)
    sign = 1.0 if f.expected >= 0 else -1.0
    past = forecast_errors(
        history.to_numpy(dtype=float), horizon_h, window.lookback_h or len(history), min_obs, window.error_step_h,
        window.recent_h,
    )  # fmt: skip
    return {
        "sign": sign,
        "current_apr": sign * float(values[-1]),
        "mean_apr": sign * f.mean,
        "run_apr": sign * f.run,
        "run_h": f.run_h,
        "recent_median_apr": sign * f.recent_median,
        "expected_carry_apr": abs(f.expected),
        "ar1_phi": f.fit.phi,
        "half_life_h": f.fit.half_life,
        "same_sign_share": same_sign_share(values, sign),
        "n_obs": len(values),
        **_errors("forecast", past["expected"] - past["realized"]),
        **_errors("last_hour", past["last_hour_ar1"] - past["realized"]),
        "error_origins": len(past),
    }


def _errors(name: str, error: pd.Series) -> dict[str, float]:
    """Mean and largest absolute error (NaN when no past hour could be checked)."""
    size = error.abs()
    return {
        f"{name}_mae_apr": float(size.mean()) if len(size) else np.nan,
        f"{name}_max_err_apr": float(size.max()) if len(size) else np.nan,
    }


def _costed(
    stats: dict[str, Any],
    legs: list[tuple[str, str]],
    fees_bps: float,
    flat_bps: float,
    borrow_apr: float,
    horizon_h: int,
    books: Mapping[tuple[str, str], LegBook],
    rule: CapacityRule,
) -> dict[str, object]:
    """The net carry with the cost from the legs' books where both have one (else the flat model), and the
    capacity."""
    leg_books = [books.get(leg) for leg in legs]
    if any(book is None for book in leg_books):
        return {**_net(stats, flat_bps, borrow_apr, horizon_h), "cost_source": "flat", "capacity_usd": math.nan,
                "capacity_net_carry_apr": math.nan, "capacity_capped": False}  # fmt: skip
    walked = [book for book in leg_books if book is not None]
    at_size = round_trip_bps(walked, fees_bps, rule.trade_notional_usd)
    source = "book" if math.isfinite(at_size) else "flat"  # a book too thin for the size: the flat model
    out: dict[str, object] = {**_net(stats, at_size if source == "book" else flat_bps, borrow_apr, horizon_h)}
    carry_apr = stats["expected_carry_apr"] - borrow_apr
    cap = capacity(walked, fees_bps, rule.share * carry_bps(carry_apr, horizon_h))
    net_at_cap = carry_apr - cap.cost_bps / 1e4 * HOURS_PER_YEAR / horizon_h if cap.notional_usd > 0 else math.nan
    out.update(cost_source=source, capacity_usd=cap.notional_usd, capacity_net_carry_apr=net_at_cap,
               capacity_capped=cap.capped)  # fmt: skip
    return out


def _net(stats: dict[str, Any], cost_bps: float, borrow_apr: float, horizon_h: int) -> dict[str, Any]:
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
    window: ForecastWindow | None = None,
    books: Mapping[tuple[str, str], LegBook] | None = None,
    rule: CapacityRule | None = None,
) -> pd.DataFrame:
    """Rank cash-and-carry and perp-perp trades by net carry APR (`OPPORTUNITY_COLUMNS`, rank 1 = best).

    `hourly`: per-perp hourly rates (`spreads.hourly_rates`: exchange, symbol, ts, funding_apr) up to `as_of`;
    the forecast reads the last `window.lookback_h` hours (None: all of them), and the forecast errors replay it
    at every `window.error_step_h`-th earlier hour that has a full horizon after it (give `hourly` the look-back
    plus a horizon or more before it to have such hours). `spreads_latest`: the latest half-spreads per instrument:
    exchange, symbol (perp), spot_symbol, perp_half_spread_bps, spot_half_spread_bps (from the basis table); a
    perp without a spot leg there gets no cash-and-carry row, and a perp without half-spreads is costed on fees
    alone.
    `borrow`: spot borrow rates; a reverse cash-and-carry (negative funding: short spot) is ranked only where
    it knows the rate (None: nowhere).
    `books`: the latest captured book per (exchange, symbol) (`books_from_frame`); a candidate both of whose
    legs have one is costed on them and gets a capacity under `rule` (default `CapacityRule()`).
    """
    books = books if books is not None else {}
    rule = rule if rule is not None else CapacityRule()
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
    window = window if window is not None else ForecastWindow()
    lookback_h = window.lookback_h
    start = pd.Timestamp(as_of) + pd.Timedelta(hours=1 - lookback_h) if lookback_h else wide.index[0]

    def evaluate(history: pd.Series) -> dict[str, Any] | None:
        recent = history[history.index >= start]
        return _evaluate(history, recent, horizon_h, window, min_obs) if len(recent) >= min_obs else None

    costs = spreads_latest.set_index(["exchange", "symbol"]) if not spreads_latest.empty else pd.DataFrame()

    def perp_half_spread(exchange: str, symbol: str) -> float:
        if costs.empty or (exchange, symbol) not in costs.index:
            return 0.0
        value = costs.loc[(exchange, symbol), "perp_half_spread_bps"]
        return float(value) if pd.notna(value) else 0.0

    # Cash-and-carry: short the perp and hold spot when funding is positive; the reverse (long perp, short
    # spot) only where the spot borrow rate is known, net of it.
    for exchange, symbol in wide.columns:
        if costs.empty or (exchange, symbol) not in costs.index:
            continue
        stats = evaluate(wide[(exchange, symbol)].dropna())
        if stats is None:
            continue
        quote = (0.0, "none") if stats["sign"] > 0 else borrow.quote(exchange, underlying_of(symbol))
        borrow_apr, borrow_source = quote
        if borrow_apr is None:
            continue
        stats = {**stats, "borrow_source": borrow_source}
        leg = costs.loc[(exchange, symbol)]
        spot_hs = float(leg["spot_half_spread_bps"]) if pd.notna(leg["spot_half_spread_bps"]) else 0.0
        spot_symbol = str(leg["spot_symbol"])
        fees_bps = 2 * (fees.fee_bps(exchange, "spot") + fees.fee_bps(exchange, "swap"))
        flat_bps = fees_bps + 2 * (spot_hs + perp_half_spread(exchange, symbol))
        legs = [(exchange, spot_symbol), (exchange, symbol)]
        stats = _costed(stats, legs, fees_bps, flat_bps, borrow_apr, horizon_h, books, rule)
        long_leg, short_leg = (spot_symbol, symbol) if stats["sign"] > 0 else (symbol, spot_symbol)
        rows.append(_row(as_of, "cash_carry", symbol, exchange, long_leg, exchange, short_leg, stats, horizon_h))

    # Perp-perp: short the venue paying more funding per hour, long the other, on common hours only.
    columns = sorted(wide.columns)
    for i, (ex_a, sym_a) in enumerate(columns):
        for ex_b, sym_b in columns[i + 1 :]:
            if ex_a == ex_b or underlying_of(sym_a) != underlying_of(sym_b):
                continue
            spread = evaluate((wide[(ex_a, sym_a)] - wide[(ex_b, sym_b)]).dropna())
            if spread is None:
                continue
            fees_bps = 2 * (fees.fee_bps(ex_a, "swap") + fees.fee_bps(ex_b, "swap"))
            flat_bps = fees_bps + 2 * (perp_half_spread(ex_a, sym_a) + perp_half_spread(ex_b, sym_b))
            spread = {**spread, "borrow_source": "none"}
            stats = _costed(spread, [(ex_a, sym_a), (ex_b, sym_b)], fees_bps, flat_bps, 0.0, horizon_h, books, rule)
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
    stats: Mapping[str, object],
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


def books_from_frame(frame: pd.DataFrame) -> dict[tuple[str, str], LegBook]:
    """`raw_order_book`-shaped rows (exchange, symbol, bid_price, bid_size, ask_price, ask_size; the last row
    of a key wins) -> the books `rank_opportunities` walks."""
    out: dict[tuple[str, str], LegBook] = {}
    for row in frame.itertuples(index=False):
        levels = [np.asarray(getattr(row, name), dtype=np.float64) for name in
                  ("bid_price", "bid_size", "ask_price", "ask_size")]  # fmt: skip
        out[(str(row.exchange), str(row.symbol))] = LegBook(*levels)
    return out


def forecast_error_summary(ranking: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, the forecast's errors at past hours beside the last-hour AR(1) forecast's (APR): the
    candidates' MAEs averaged with the hours each was measured at as weights, the largest error, and the total
    of those hours."""
    columns = ["strategy", "candidates", "origins"]
    columns += [f"{m}_{e}" for m in ("forecast", "last_hour") for e in ("mae_apr", "max_err_apr")]
    measured = ranking[ranking["error_origins"] > 0]
    rows = []
    for strategy, group in measured.groupby("strategy", sort=True):
        w = group["error_origins"].astype(float)
        row: list[object] = [strategy, len(group), int(w.sum())]
        for m in ("forecast", "last_hour"):
            row += [float(np.average(group[f"{m}_mae_apr"], weights=w)), float(group[f"{m}_max_err_apr"].max())]
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
