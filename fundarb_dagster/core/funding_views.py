"""What a trader looks at of funding: the heat map (venue x underlying, annualised funding over the last day
and week) and the funding spread of each venue pair over time. Pure frames in, frames or PNG bytes out."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .units import HOURS_PER_YEAR  # noqa: E402

HEAT_WINDOWS_H = {"day": 24, "week": 168}
# Underlyings (columns) in the heat map picture: 100 underlyings on 3 venues drew 600 labelled cells per panel,
# unreadable at the figure's size and ~9 s of a funding_rates run at load 8. The metadata tables keep every one.
HEAT_PLOT_UNDERLYINGS = 24


def underlying(symbol: str) -> str:
    """The base asset of a ccxt unified symbol (`BTC/USDT:USDT` -> `BTC`): venues quote BTC in USDT or USDC."""
    return symbol.split("/", 1)[0]


def funding_heat(rates: pd.DataFrame, end: pd.Timestamp, hours: float) -> pd.DataFrame:
    """Annualised funding per venue (rows) and underlying (columns) over the `hours` before `end`.

    `rates`: settlements with `exchange, symbol, funding_ts, funding_rate, interval_h`. The APR is time
    weighted, `8760 x sum(rate) / sum(interval_h)`, so a venue settling hourly and one settling every 8 h
    over the same day weigh the same. A venue with no settlement of an underlying in the window is NaN."""
    start = end - pd.Timedelta(hours=hours)
    have = rates[(rates["funding_ts"] >= start) & (rates["funding_ts"] < end)].dropna(
        subset=["funding_rate", "interval_h"]
    )
    if have.empty:
        return pd.DataFrame(dtype=float)
    have = have.assign(underlying=have["symbol"].map(underlying))
    sums = have.groupby(["exchange", "underlying"])[["funding_rate", "interval_h"]].sum()
    apr = (HOURS_PER_YEAR * sums["funding_rate"] / sums["interval_h"]).unstack("underlying")
    return apr.sort_index().sort_index(axis=1)


def widest_underlyings(heats: dict[str, pd.DataFrame], limit: int = HEAT_PLOT_UNDERLYINGS) -> list[str]:
    """The `limit` underlyings (heat map columns) whose largest |APR| on any venue and window is widest, in column
    order; every one when there are no more than `limit`."""
    frames = [frame for frame in heats.values() if not frame.empty]
    columns = sorted({c for frame in frames for c in frame.columns})
    if len(columns) <= limit:
        return columns
    width = {c: max(float(np.nanmax(np.abs(f[c].to_numpy(dtype=float)), initial=-1.0)) for f in frames if c in f)
             for c in columns}  # fmt: skip
    widest = sorted(columns, key=lambda c: (-width[c], c))[:limit]
    return sorted(widest)


def funding_heat_png(heats: dict[str, pd.DataFrame], end: pd.Timestamp, limit: int = HEAT_PLOT_UNDERLYINGS) -> bytes:
    """One heat-map panel per window (`{"last day": frame, ...}`), APR in %, diverging around zero: the `limit`
    widest underlyings (`widest_underlyings`), the title saying how many there are in all."""
    shown = {name: frame for name, frame in heats.items() if not frame.empty}
    if not shown:
        raise ValueError("heats: every window is empty; nothing to draw")
    total = len({c for frame in shown.values() for c in frame.columns})
    columns = widest_underlyings(shown, limit)
    shown = {name: frame[[c for c in columns if c in frame.columns]] for name, frame in shown.items()}
    limit = max(float(np.nanmax(np.abs(f.to_numpy(dtype=float)))) for f in shown.values()) * 100 or 1.0
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown) + 1, 3.2), squeeze=False)
    image = None
    for ax, (name, frame) in zip(axes[0], shown.items(), strict=True):
        data = frame.to_numpy(dtype=float) * 100
        image = ax.imshow(data, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(frame.shape[1]), list(frame.columns))
        ax.set_yticks(range(frame.shape[0]), list(frame.index))
        for (i, j), value in np.ndenumerate(data):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"{name} to {end:%Y-%m-%d %H:%M}", fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), label="funding APR %")
    if total > len(columns):
        fig.suptitle(f"the {len(columns)} of {total} underlyings with the widest |APR|", fontsize=10)
    return _png(fig)


def spread_pairs(spreads: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(underlying, exchange_a, exchange_b) of every pair in a `funding_spreads` frame, sorted."""
    if spreads.empty:
        return []
    keys = spreads[["underlying", "exchange_a", "exchange_b"]].drop_duplicates()
    return sorted(keys.itertuples(index=False, name=None))


def spread_summary(spreads: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Per venue pair: the latest hour's funding spread and basis spread, and the mean spread over the last
    day and week before `end` (fractions, as stored; the UI shows them in %)."""
    columns = ["underlying", "exchange_a", "exchange_b", "latest_ts", "funding_spread_apr", "day_mean_apr",
               "week_mean_apr", "basis_spread_bps"]  # fmt: skip
    if spreads.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (u, a, b), group in spreads.sort_values("ts").groupby(["underlying", "exchange_a", "exchange_b"]):
        last = group.iloc[-1]
        day = group[group["ts"] >= end - pd.Timedelta(hours=HEAT_WINDOWS_H["day"])]["funding_spread_apr"]
        week = group[group["ts"] >= end - pd.Timedelta(hours=HEAT_WINDOWS_H["week"])]["funding_spread_apr"]
        latest = (last["ts"], last["funding_spread_apr"])
        rows.append((u, a, b, *latest, day.mean(), week.mean(), last["basis_spread_bps"]))
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("funding_spread_apr", key=np.abs, ascending=False, ignore_index=True)


# Panels in the spread plot: a desk of 100 underlyings on 3 venues has 300 pairs, and matplotlib's shared axes
# cost grows with the square of the panels (a 300-panel figure took ~5 minutes per funding_spreads run).
SPREAD_PLOT_PAIRS = 12


def widest_pairs(spreads: pd.DataFrame, limit: int = SPREAD_PLOT_PAIRS) -> list[tuple[str, str, str]]:
    """The `limit` pairs whose latest hour's spread is widest (|APR|), widest first; ties in pair order."""
    if spreads.empty:
        return []
    latest = spreads.sort_values("ts", kind="stable").groupby(["underlying", "exchange_a", "exchange_b"]).tail(1)
    latest = latest.assign(_width=latest["funding_spread_apr"].abs().fillna(-1.0))
    latest = latest.sort_values(["underlying", "exchange_a", "exchange_b"], kind="stable")
    latest = latest.sort_values("_width", ascending=False, kind="stable").head(limit)
    return list(latest[["underlying", "exchange_a", "exchange_b"]].itertuples(index=False, name=None))


def spread_png(spreads: pd.DataFrame, limit: int = SPREAD_PLOT_PAIRS) -> bytes:
    """The funding spread (APR %) of the `limit` widest venue pairs over time (`widest_pairs`; all of them
    when fewer), one small panel per pair, predicted hours (not settled yet) marked; the title says how many
    pairs there are in all (the metadata table lists every one)."""
    pairs = sorted(widest_pairs(spreads, limit))
    if not pairs:
        raise ValueError("spreads: no rows; nothing to draw")
    total = len(spread_pairs(spreads))
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), sharex=True, squeeze=False)
    for ax, (u, a, b) in zip(axes.flat, pairs, strict=False):
        pair = spreads[(spreads["underlying"] == u) & (spreads["exchange_a"] == a) & (spreads["exchange_b"] == b)]
        pair = pair.sort_values("ts")
        ax.plot(pair["ts"], pair["funding_spread_apr"] * 100, lw=0.9, color="tab:blue")
        predicted = pair[pair["is_predicted_a"] | pair["is_predicted_b"]]
        if len(predicted):
            ax.plot(predicted["ts"], predicted["funding_spread_apr"] * 100, ".", ms=2, color="tab:orange")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"{u}: {a} - {b}", fontsize=9)
        ax.set_ylabel("APR %", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    if total > len(pairs):
        fig.suptitle(f"the {len(pairs)} widest of {total} pairs (latest hour)", fontsize=10)
    fig.autofmt_xdate()
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
