"""Risk of a book of two-leg positions: stress by price shock, exposures, limits, historical VaR/ES.

The book is a frame with one row per leg (`core.backtest.records.OPEN_COLUMNS`): pair, leg, exchange, symbol,
underlying, kind (perp/spot), units (signed), entry_price, mark_price, wallet_usd (isolated margin of a perp
leg: initial margin plus funding since), mmr, taker_fee. Pure functions, frames in and out.

Stress: both legs of a pair move together (same underlying) by a shock `s`; a perp leg is liquidated when its
equity `wallet + units * (P' - entry)` falls to `(mmr + fee) * |units| * P' - mmr_cum` (the same condition as
`accounting.liquidation_price` with the maintenance amount added to the wallet). `mmr` is the venue's flat rate
unless `apply_tiers` put the rate and maintenance amount (`mmr_cum`) of the leverage tier the leg's notional
falls in (the `leverage_tiers` table, valid at the book's time); a book without `mmr_cum` has none. For each
pair and shock we report which leg goes first (the one whose liquidation price is reached first on the way from
the mark to the shocked price), and how much margin must move to it so that it survives the shock, against what
the other leg could release at that price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from .backtest.accounting import liquidation_price
from .leverage_tiers import tier_for

DEFAULT_SHOCKS = (-0.5, -0.3, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.3, 0.5)
STRESS_COLUMNS = [
    "pair",
    "shock_pct",
    "first_liquidated",
    "liq_price_first",
    "margin_needed_usd",
    "donor_free_margin_usd",
    "transfer_prevents",
    "pnl_usd",
]


def leg_equity(units: Any, entry: Any, wallet: Any, price: Any) -> Any:
    """Isolated margin equity of a perp leg at `price`: `wallet + units * (price - entry)`."""
    return np.asarray(wallet, dtype=float) + np.asarray(units, dtype=float) * (np.asarray(price) - entry)


def maintenance(units: Any, price: Any, mmr: Any, fee: Any, cum: Any = 0.0) -> Any:
    """What must stay in the wallet at `price`: `(mmr + fee) * |units| * price - cum` (cum: the tier's
    maintenance amount)."""
    size = np.abs(np.asarray(units, dtype=float))
    return (np.asarray(mmr, dtype=float) + fee) * size * np.asarray(price) - np.asarray(cum, dtype=float)


def margin_to_survive(units: Any, entry: Any, wallet: Any, price: Any, mmr: Any, fee: Any, cum: Any = 0.0) -> Any:
    """Extra wallet a perp leg needs to stay above maintenance at `price` (0 when it already does)."""
    return np.maximum(0.0, maintenance(units, price, mmr, fee, cum) - leg_equity(units, entry, wallet, price))


def _cum(book: pd.DataFrame) -> pd.Series:
    """Each leg's maintenance amount (0 where no tier was applied)."""
    return book["mmr_cum"].fillna(0.0) if "mmr_cum" in book else pd.Series(0.0, index=book.index)


def _liquidation(book: pd.DataFrame) -> np.ndarray:
    """Liquidation prices: the maintenance amount counts like wallet (the condition is linear in both)."""
    wallet = book["wallet_usd"].astype(float) + _cum(book)
    return np.asarray(liquidation_price(book["entry_price"], wallet, book["units"], book["mmr"], book["taker_fee"]))


def apply_tiers(book: pd.DataFrame, tiers: pd.DataFrame) -> pd.DataFrame:
    """The book with each perp leg's `mmr` and `mmr_cum` from the leverage tier its notional (|units| x mark)
    falls in, where `tiers` (the `leverage_tiers` rows valid at the book's time) has its market, and
    `mmr_source` = tiers | flat."""
    out = book.copy()
    out["mmr_cum"] = 0.0
    out["mmr_source"] = "flat"
    if tiers.empty or out.empty:
        return out
    schedules = {key: rows for key, rows in tiers.groupby(["exchange", "symbol"])}
    for i, leg in out.iterrows():
        schedule = schedules.get((leg["exchange"], leg["symbol"]))
        if leg["kind"] != "perp" or schedule is None:
            continue
        tier = tier_for(schedule, float(leg["units"]) * float(leg["mark_price"]))
        out.loc[i, ["mmr", "mmr_cum", "mmr_source"]] = [float(tier["mmr"]), float(tier["maintenance_amount"]), "tiers"]
    return out


def liquidation_distance(book: pd.DataFrame) -> pd.Series:
    """Fraction the mark must move against each perp leg to liquidate it (NaN for spot legs)."""
    liq = _liquidation(book)
    mark = book["mark_price"].to_numpy(dtype=float)
    dist = np.where(book["units"] < 0, liq - mark, mark - liq) / mark
    return pd.Series(np.where(book["kind"] == "perp", dist, np.nan), index=book.index)


def stress_book(book: pd.DataFrame, shocks: Sequence[float] = DEFAULT_SHOCKS) -> pd.DataFrame:
    """Per pair and shock: the first leg liquidated (None if none), the margin it needs to survive, and the
    free margin the other leg would have at the shocked price (a perp: equity above maintenance; a spot leg:
    its unrealized gain, releasable by selling part of it)."""
    rows = []
    for pair, legs in book.groupby("pair", sort=True):
        legs = legs.reset_index(drop=True)
        liq = _liquidation(legs)
        cum = _cum(legs).to_numpy()
        is_perp = (legs["kind"] == "perp").to_numpy()
        for s in shocks:
            price = legs["mark_price"].to_numpy(dtype=float) * (1.0 + s)
            units = legs["units"].to_numpy(dtype=float)
            entry = legs["entry_price"].to_numpy(dtype=float)
            pnl = float((units * (price - legs["mark_price"].to_numpy(dtype=float))).sum())
            need = np.where(
                is_perp,
                margin_to_survive(units, entry, legs["wallet_usd"], price, legs["mmr"], legs["taker_fee"], cum),
                0.0,
            )
            failing = np.nonzero(need > 0)[0]
            if len(failing) == 0:
                rows.append((pair, 100 * s, None, np.nan, 0.0, np.nan, True, pnl))
                continue
            # first reached on the way from the mark: the liquidation price closest to the mark
            mark = legs["mark_price"].to_numpy(dtype=float)
            first = failing[np.argmin(np.abs(liq[failing] - mark[failing]))]
            donors = [k for k in range(len(legs)) if k not in set(failing)]
            free = 0.0
            for k in donors:
                if is_perp[k]:
                    eq = leg_equity(units[k], entry[k], legs["wallet_usd"].iloc[k], price[k])
                    free += float(
                        max(
                            0.0,
                            eq
                            - maintenance(units[k], price[k], legs["mmr"].iloc[k], legs["taker_fee"].iloc[k], cum[k]),
                        )  # fmt: skip
                    )
                else:
                    free += float(max(0.0, units[k] * (price[k] - entry[k])))
            needed = float(need[failing].sum())
            rows.append(
                (
                    pair,
                    100 * s,
                    f"{legs['exchange'][first]}:{legs['symbol'][first]}",
                    float(liq[first]),
                    needed,
                    free,
                    free >= needed,
                    pnl,
                )
            )
    return pd.DataFrame(rows, columns=STRESS_COLUMNS)


@dataclass(frozen=True)
class RiskLimits:
    """Limits of the book; None switches a limit off. Shares and utilizations are fractions."""

    max_gross_usd: float | None = None  # sum of |units x mark| over legs
    max_net_usd: float | None = None  # |sum of units x mark| per underlying, worst one (delta left over)
    max_venue_share: float | None = 0.6  # one venue's share of gross
    max_asset_share: float | None = 0.6  # one underlying's share of gross
    max_leverage: float | None = 5.0  # gross / equity
    max_margin_utilization: float | None = 0.5  # per perp leg: maintenance / margin equity (1 = liquidation)
    min_liq_distance: float | None = 0.1  # per perp leg: adverse move to liquidation, fraction of mark
    max_drawdown: float | None = 0.2
    max_var_usd: float | None = None  # one-hour historical VaR of the current book at `var_level` (book_scenarios)
    max_es_usd: float | None = None
    var_level: float = 0.99

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and (not np.isfinite(v) or v < 0):
                raise ValueError(f"{f.name}: {v!r} must be a finite number >= 0 (or None)")
        if not 0.5 < self.var_level < 1:
            raise ValueError(f"var_level: {self.var_level!r} must be in (0.5, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def historical_var_es(pnl: Any, level: float = 0.99) -> tuple[float, float]:
    """Historical VaR and expected shortfall of a PnL sample, as positive losses: VaR is the loss exceeded with
    probability `1 - level` (lower-tail empirical quantile, linear interpolation), ES the mean loss beyond it."""
    x = np.asarray(pnl, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    q = float(np.quantile(x, 1.0 - level))
    tail = x[x <= q]
    return -q, float(-tail.mean())


def book_pnl_scenarios(units_usd: Any, returns: Any) -> np.ndarray:
    """Historical simulation: each past bar's returns `(N, legs)` applied to today's leg exposures `(legs,)`."""
    return np.asarray(returns, dtype=float) @ np.asarray(units_usd, dtype=float)


SCENARIO_COLUMNS = ["ts", "price_pnl_usd", "funding_pnl_usd", "pnl_usd"]


def book_scenarios(book: pd.DataFrame, closes: pd.DataFrame, settlements: pd.DataFrame) -> pd.DataFrame:
    """Historical simulation of the current book: the PnL today's legs would make in each past hour if prices
    and funding moved as they did then (`SCENARIO_COLUMNS`, one row per hour).

    book: the open legs (exchange, symbol, kind, units signed, mark_price). closes: hourly bars `exchange,
    symbol, ts, close` (ts = the bar's open). settlements: `exchange, symbol, funding_ts, funding_rate`.
    For the hour of the bar opened at `ts` and each leg with exposure `e = units x mark_price` (USD, signed):

        price_pnl   = e x (close[ts] / close[ts - 1h] - 1)
        funding_pnl = -e x (sum of the perp's rates settled in (ts, ts + 1h])   (a short receives a positive rate)

    Hours where a leg has no price return (no bar, or none the hour before) are left out rather than counted
    as calm. An empty book gives no rows."""
    if book.empty:
        return pd.DataFrame(columns=SCENARIO_COLUMNS)
    legs = list(zip(book["exchange"], book["symbol"], strict=True))
    exposure = (book["units"] * book["mark_price"]).to_numpy(dtype=float)
    bars = closes.assign(ts=pd.to_datetime(closes["ts"]).astype("datetime64[us]"))
    wide = bars.pivot_table(index="ts", columns=["exchange", "symbol"], values="close", aggfunc="last")
    hours = pd.date_range(wide.index.min(), wide.index.max(), freq="h") if len(wide) else pd.DatetimeIndex([])
    price = wide.reindex(index=hours, columns=pd.MultiIndex.from_tuples(legs)).to_numpy(dtype=float)
    returns = price[1:] / price[:-1] - 1.0  # the hour of each bar after the first
    rates = np.zeros_like(returns)
    if len(settlements) and len(hours) > 1:
        paid = settlements.assign(
            hour=pd.to_datetime(settlements["funding_ts"]).astype("datetime64[us]").dt.ceil("h") - pd.Timedelta("1h")
        )
        paid = paid.groupby(["hour", "exchange", "symbol"])["funding_rate"].sum()
        paid = paid.unstack(["exchange", "symbol"]).reindex(index=hours[1:], columns=pd.MultiIndex.from_tuples(legs))
        is_perp = (book["kind"] == "perp").to_numpy()
        rates = np.nan_to_num(paid.to_numpy(dtype=float)) * is_perp
    ok = np.isfinite(returns).all(axis=1)
    price_pnl = book_pnl_scenarios(exposure, np.where(ok[:, None], returns, 0.0))[ok]
    funding_pnl = -book_pnl_scenarios(exposure, rates)[ok]
    return pd.DataFrame(
        {
            "ts": hours[1:][ok],
            "price_pnl_usd": price_pnl,
            "funding_pnl_usd": funding_pnl,
            "pnl_usd": price_pnl + funding_pnl,
        },
        columns=SCENARIO_COLUMNS,
    )


def exposures(book: pd.DataFrame, equity: float) -> dict[str, Any]:
    """Gross, worst net per underlying, venue and asset shares, leverage, margin utilization, liq distance."""
    notional = (book["units"] * book["mark_price"]).astype(float)
    gross = float(notional.abs().sum())
    net_by_asset = notional.groupby(book["underlying"]).sum()
    by_venue = notional.abs().groupby(book["exchange"]).sum()
    by_asset = notional.abs().groupby(book["underlying"]).sum()
    perp = book[book["kind"] == "perp"]
    margin_eq = leg_equity(perp["units"], perp["entry_price"], perp["wallet_usd"], perp["mark_price"])
    maint = maintenance(perp["units"], perp["mark_price"], perp["mmr"], perp["taker_fee"], _cum(perp))
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(margin_eq > 0, maint / margin_eq, np.inf)
    dist = liquidation_distance(book)
    return {
        "gross_usd": gross,
        "net_usd": float(net_by_asset.abs().max()) if len(net_by_asset) else 0.0,
        "net_by_asset": net_by_asset.to_dict(),
        "venue_share": (by_venue / gross).to_dict() if gross else {},
        "asset_share": (by_asset / gross).to_dict() if gross else {},
        "leverage": gross / equity if equity > 0 else float("inf"),
        "margin_utilization": dict(
            zip(perp["exchange"] + ":" + perp["symbol"] + " " + perp["pair"], util, strict=True)
        ),
        "liq_distance": dict(
            zip(perp["exchange"] + ":" + perp["symbol"] + " " + perp["pair"], dist[perp.index], strict=True)
        ),
    }


@dataclass(frozen=True)
class Breach:
    rule: str  # risk_<limit>
    subject: str
    value: float
    threshold: float
    severity: str
    message: str


def _severity(value: float, threshold: float, lower_is_bad: bool = False) -> str:
    # far beyond the limit (x1.5, or under 2/3 of a floor) is critical, else a warning
    if lower_is_bad:
        return "critical" if value <= threshold / 1.5 else "warning"
    return "critical" if value >= threshold * 1.5 else "warning"


def evaluate_limits(
    book: pd.DataFrame, equity: float, drawdown: float, pnl_history: Any, limits: RiskLimits, subject: str = "book"
) -> tuple[dict[str, Any], list[Breach]]:
    """The book's risk figures and every limit they breach. `pnl_history`: the current book's PnL in each past
    hour's price and funding moves (`book_scenarios`) for VaR/ES; `drawdown`: current drawdown from the equity
    peak."""
    ex = exposures(book, equity)
    var, es = historical_var_es(pnl_history, limits.var_level)
    figures = {**ex, "equity_usd": equity, "drawdown": drawdown, "var_usd": var, "es_usd": es}
    out: list[Breach] = []

    def above(rule: str, who: str, value: float, limit: float | None, what: str) -> None:
        if limit is not None and np.isfinite(value) and value > limit:
            sev = _severity(value, limit)
            out.append(
                Breach(
                    f"risk_{rule}", who, float(value), float(limit), sev, f"{what} {value:,.4g} > limit {limit:,.4g}"
                )
            )

    def below(rule: str, who: str, value: float, limit: float | None, what: str) -> None:
        if limit is not None and np.isfinite(value) and value < limit:
            sev = _severity(value, limit, lower_is_bad=True)
            out.append(
                Breach(
                    f"risk_{rule}", who, float(value), float(limit), sev, f"{what} {value:,.4g} < floor {limit:,.4g}"
                )
            )

    above("gross_exposure", subject, ex["gross_usd"], limits.max_gross_usd, "gross exposure USD")
    above("net_exposure", subject, ex["net_usd"], limits.max_net_usd, "net exposure USD (worst underlying)")
    for venue, share in ex["venue_share"].items():
        above("venue_concentration", f"{subject} {venue}", share, limits.max_venue_share, f"{venue} share of gross")
    for asset, share in ex["asset_share"].items():
        above("asset_concentration", f"{subject} {asset}", share, limits.max_asset_share, f"{asset} share of gross")
    above("leverage", subject, ex["leverage"], limits.max_leverage, "gross leverage")
    for leg, util in ex["margin_utilization"].items():
        above("margin_utilization", f"{subject} {leg}", util, limits.max_margin_utilization, "margin utilization")
    for leg, dist in ex["liq_distance"].items():
        below("liq_distance", f"{subject} {leg}", dist, limits.min_liq_distance, "distance to liquidation")
    above("drawdown", subject, drawdown, limits.max_drawdown, "drawdown")
    above("var", subject, var, limits.max_var_usd, f"VaR {limits.var_level:.0%} USD")
    above("es", subject, es, limits.max_es_usd, f"ES {limits.var_level:.0%} USD")
    return figures, out
