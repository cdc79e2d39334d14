"""Cross-venue funding spreads on a common hourly grid.

An 8h venue's settlement at 08:00 pays for the 8 hours 00:00-08:00; a 1h venue's at 01:00 for 00:00-01:00.
To compare them, every settlement is spread over the hours it accrued (its rate per hour in each), so each
venue has one rate per hour and two venues compare hour by hour whatever their intervals:

    funding_spread_apr(h) = (rate_per_hour_a(h) - rate_per_hour_b(h)) * 8760

Hours whose settlement has not happened yet use the venue's last predicted rate known before the hour ended
(flagged `is_predicted`), so a live spread exists before the 8h venue settles.

The table is computed in DuckDB (`replace_funding_spreads`, `sql/funding/spreads_in_window.sql`): a year of 300
perps is millions of hour rows, which pandas merged and sorted in ~45 s. `hourly_rates` / `funding_spreads` are
the same computation in pandas, kept as the reference the SQL is tested against (with
`spread_inputs_rates/_basis.sql`); `opportunities` uses `hourly_rates` on its few weeks of hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fundarb_dagster.core.units import HOURS_PER_YEAR

from .basis import underlying_of
from .sql import execute, load_sql, registered, replace_window

HOUR = pd.Timedelta(hours=1)
HOURLY_COLUMNS = ["exchange", "symbol", "ts", "rate_per_hour", "funding_apr", "is_predicted"]
SPREAD_COLUMNS = [
    "underlying",
    "exchange_a",
    "symbol_a",
    "exchange_b",
    "symbol_b",
    "ts",
    "rate_per_hour_a",
    "rate_per_hour_b",
    "funding_apr_a",
    "funding_apr_b",
    "funding_spread_apr",
    "is_predicted_a",
    "is_predicted_b",
    "basis_bps_a",
    "basis_bps_b",
    "basis_spread_bps",
]


def hourly_rates(
    rates: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One rate per hour per perp (`HOURLY_COLUMNS`, ts = hour start) in [start, end).

    `rates`: exchange, symbol, funding_ts, interval_h, rate_per_hour (the funding_rates table).
    `predictions`: exchange, symbol, ts, funding_ts, interval_h, rate_per_hour (funding_predictions).
    """
    settled = _spread_settlements(rates)
    if start is not None:
        settled = settled[settled["ts"] >= start]
    if end is not None:
        settled = settled[settled["ts"] < end]
    settled = settled.assign(is_predicted=False)
    frames = [settled]
    if predictions is not None and not predictions.empty and start is not None and end is not None:
        frames.append(_predicted_hours(predictions, settled, start, end))
    out = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(len(f) for f in frames) else settled
    out["funding_apr"] = out["rate_per_hour"] * HOURS_PER_YEAR
    out = out.sort_values(["exchange", "symbol", "ts"], kind="stable")
    return out[HOURLY_COLUMNS].reset_index(drop=True)


def _spread_settlements(rates: pd.DataFrame) -> pd.DataFrame:
    """Each settlement -> one row per hour it accrued over (interval < 1h: averaged within the hour)."""
    if rates.empty:
        return pd.DataFrame(columns=["exchange", "symbol", "ts", "rate_per_hour"])
    frame = rates[["exchange", "symbol", "funding_ts", "interval_h", "rate_per_hour"]].dropna().copy()
    frame["funding_ts"] = pd.to_datetime(frame["funding_ts"]).astype("datetime64[us]")
    hours = np.maximum(np.rint(frame["interval_h"].to_numpy(dtype=float)), 1).astype(int)
    repeated = frame.loc[frame.index.repeat(hours)].copy()
    # k = 1..n hours back from the settlement, per original row (a running count restarted at each row's first)
    k = np.arange(hours.sum()) - np.repeat(np.cumsum(hours) - hours, hours) + 1
    repeated["ts"] = (repeated["funding_ts"] - pd.to_timedelta(k, unit="h")).dt.floor("h")
    out = repeated.groupby(["exchange", "symbol", "ts"], as_index=False, sort=True)["rate_per_hour"].mean()
    return out


def _predicted_hours(
    predictions: pd.DataFrame, settled: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    pred = predictions[["exchange", "symbol", "ts", "funding_ts", "rate_per_hour"]].dropna().copy()
    if pred.empty:
        return pd.DataFrame(columns=[*HOURLY_COLUMNS[:4], "is_predicted"])
    pred["ts"] = pd.to_datetime(pred["ts"]).astype("datetime64[us]")
    pred["funding_ts"] = pd.to_datetime(pred["funding_ts"]).astype("datetime64[us]")
    hours = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="h", inclusive="left").astype("datetime64[us]")
    keys = pred[["exchange", "symbol"]].drop_duplicates()
    grid = keys.merge(pd.DataFrame({"ts": hours}), how="cross")
    have = settled[["exchange", "symbol", "ts"]].assign(_have=True)
    grid = grid.merge(have, on=["exchange", "symbol", "ts"], how="left")
    grid = grid[grid["_have"].isna()].drop(columns="_have")
    if grid.empty:
        return pd.DataFrame(columns=[*HOURLY_COLUMNS[:4], "is_predicted"])
    grid["_end"] = grid["ts"] + HOUR
    merged = pd.merge_asof(
        grid.sort_values("_end"),
        pred.rename(columns={"ts": "known_at"}).sort_values("known_at"),
        left_on="_end",
        right_on="known_at",
        by=["exchange", "symbol"],
        direction="backward",
        allow_exact_matches=False,
    )
    merged = merged[merged["funding_ts"] > merged["ts"]]
    return merged[["exchange", "symbol", "ts", "rate_per_hour"]].assign(is_predicted=True)


def funding_spreads(hourly: pd.DataFrame, basis_1h: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every cross-venue pair of perps on the same underlying, hour by hour (`SPREAD_COLUMNS`).

    Pairs are ordered (exchange_a, symbol_a) < (exchange_b, symbol_b); the spread is a minus b. Hours where
    only one venue has a rate give no row. `basis_1h`: the basis table at timeframe 1h (ts = hour start).
    """
    if hourly.empty:
        return pd.DataFrame(columns=SPREAD_COLUMNS)
    frame = hourly.copy()
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    frame["underlying"] = frame["symbol"].map({s: underlying_of(s) for s in frame["symbol"].unique()})
    if basis_1h is not None and not basis_1h.empty:
        b = basis_1h[["exchange", "symbol", "ts", "basis_bps"]].copy()
        b["ts"] = pd.to_datetime(b["ts"]).astype("datetime64[us]")
        frame = frame.merge(b, on=["exchange", "symbol", "ts"], how="left")
    else:
        frame["basis_bps"] = np.nan
    cols = ["exchange", "symbol", "ts", "rate_per_hour", "funding_apr", "is_predicted", "basis_bps"]
    # Each (exchange, symbol) numbered in its tuple order: pairs compare and sort on integers, not strings.
    perps = frame[["exchange", "symbol"]].drop_duplicates().sort_values(["exchange", "symbol"])
    rank = pd.Series(np.arange(len(perps)), index=pd.MultiIndex.from_frame(perps))
    frame["_rank"] = rank.reindex(pd.MultiIndex.from_frame(frame[["exchange", "symbol"]])).to_numpy()
    cols = [*cols, "_rank"]
    a = frame[["underlying", *cols]].rename(columns={c: f"{c}_a" for c in cols if c != "ts"})
    b = frame[["underlying", *cols]].rename(columns={c: f"{c}_b" for c in cols if c != "ts"})
    pairs = a.merge(b, on=["underlying", "ts"], how="inner")
    pairs = pairs[(pairs["exchange_a"] != pairs["exchange_b"]) & (pairs["_rank_a"] < pairs["_rank_b"])]
    pairs = pairs.assign(
        funding_spread_apr=(pairs["rate_per_hour_a"] - pairs["rate_per_hour_b"]) * HOURS_PER_YEAR,
        basis_spread_bps=pairs["basis_bps_a"] - pairs["basis_bps_b"],
    )
    pairs = pairs.sort_values(["underlying", "_rank_a", "_rank_b", "ts"], kind="stable")
    return pairs[SPREAD_COLUMNS].reset_index(drop=True)


def replace_funding_spreads(conn: Any, window: Mapping[str, Any]) -> int:
    """Make `funding_spreads` hold exactly the spreads of [$start, $end) (`window`: the standard parameters), computed
    in DuckDB from funding_rates, funding_predictions and basis; returns the rows written. The same rows as
    `funding_spreads(hourly_rates(...), basis)` on the same inputs (tests/core/test_spreads.py)."""
    perps = execute(conn, load_sql("funding", "spread_perps"), window).df()
    perps["underlying"] = perps["symbol"].map({s: underlying_of(s) for s in perps["symbol"].unique()})
    perps["perp_rank"] = np.arange(len(perps), dtype=np.int64)  # in (exchange, symbol) order: pairs compare on it
    with registered(conn, "spread_perps", perps):
        sql = load_sql("funding", "spreads_in_window")
        return replace_window(conn, "funding_spreads", sql, window, staged=False)
