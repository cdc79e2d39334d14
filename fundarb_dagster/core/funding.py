"""Funding-rate maths: interval history, grid keys, normalisation, point-in-time predictions.

A venue quotes funding as a fraction per funding interval; the interval differs by venue (8h, 4h, 1h) and
changes over time (binance moves volatile symbols from 8h to 4h). Everything here uses the interval *in
force at the settlement* from an interval history, never a per-venue constant:

    rate_per_hour = funding_rate / interval_h
    funding_apr   = funding_rate * 8760 / interval_h      (simple, not compounded: what venues quote)

Settlement times carry jitter (`08:00:00.004Z`) and some venues settle minutes late: keys round to the
interval grid, the raw time is kept beside it. Frames in, frames out; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .instruments import InstrumentRegistry
from .units import HOUR_MS, HOURS_PER_YEAR

# Intervals venues actually use; a gap between settlements outside this set is missing data, not an interval.
PLAUSIBLE_INTERVALS_H: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

INTERVAL_COLUMNS = ["exchange", "symbol", "valid_from", "valid_to", "interval_h", "cap", "floor", "source"]
# Spans start at a settlement time seen by one source; the same settlement from another source may be a
# few ms (or, on hyperliquid, minutes) off. Looking up a little later keeps both in the same span.
LOOKUP_TOLERANCE = pd.Timedelta(minutes=15)
OBSERVATION_COLUMNS = ["exchange", "symbol", "ts_ms", "interval_h", "cap", "floor", "source"]


def annualize(rate: Any, interval_h: Any) -> Any:
    """A rate per funding interval -> simple annual rate: `rate * 8760 / interval_h` (scalars or arrays)."""
    return np.asarray(rate, dtype=float) * HOURS_PER_YEAR / np.asarray(interval_h, dtype=float)


def per_hour(rate: Any, interval_h: Any) -> Any:
    return np.asarray(rate, dtype=float) / np.asarray(interval_h, dtype=float)


def round_to_grid(ts_ms: Any, interval_h: Any) -> np.ndarray:
    """Round settlement times to the nearest multiple of their interval (epoch-aligned, as venues settle).

    A time more than a quarter of an interval off any grid point is not jitter: it is kept rounded to the
    hour instead, so that a venue settling at an unexpected hour still gets a stable, truthful key.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    step = np.rint(np.asarray(interval_h, dtype=float) * HOUR_MS).astype(np.int64)
    step = np.broadcast_to(step, ts.shape)
    nearest = ((ts + step // 2) // step) * step
    hourly = ((ts + HOUR_MS // 2) // HOUR_MS) * HOUR_MS
    return np.where(np.abs(ts - nearest) <= step // 4, nearest, hourly)


def to_timestamp(ts_ms: Any) -> pd.Series:
    return pd.to_datetime(pd.Series(ts_ms, dtype="int64"), unit="ms").astype("datetime64[us]")


# -- interval history ---------------------------------------------------------------------------------
def infer_intervals(settlements: pd.DataFrame, min_run: int = 2) -> pd.DataFrame:
    """Interval observations inferred from the spacing of settled funding (`exchange, symbol, funding_ts_ms`).

    The gap before a settlement is its accrual interval. A gap that is not a plausible interval (a missed
    settlement: 16h on an 8h venue) is ignored, and a new interval must repeat `min_run` times in a row
    before it counts, so one missed hourly settlement does not look like a switch to 2h: each run of equal
    plausible gaps at least `min_run` long confirms its interval at the settlement after its first gap, an
    observation where it differs from the interval the key's run before confirmed. A key with only two
    settlements takes their gap when plausible. Arrays over every key at once: a Python loop over the gaps
    (4 years of 300 perps are 4.4 M) took seconds; tests/core/test_funding.py holds it equal to that loop.
    """
    if settlements.empty:
        return pd.DataFrame(columns=OBSERVATION_COLUMNS)
    frame = settlements[["exchange", "symbol", "funding_ts_ms"]].drop_duplicates().dropna(subset=["exchange", "symbol"])
    exchange, _ = pd.factorize(frame["exchange"], sort=True)
    symbol, symbols = pd.factorize(frame["symbol"], sort=True)
    key = exchange.astype(np.int64) * len(symbols) + symbol  # in (exchange, symbol) order
    order = np.lexsort((frame["funding_ts_ms"].to_numpy(dtype=np.int64), key))
    key, ts = key[order], frame["funding_ts_ms"].to_numpy(dtype=np.int64)[order]
    gaps_h = np.round(np.diff(ts) / HOUR_MS * 4) / 4  # jitter of seconds must not matter
    ok = (key[1:] == key[:-1]) & np.isin(gaps_h, PLAUSIBLE_INTERVALS_H)  # gap i: settlement i -> i + 1
    continues = ok & np.concatenate([[False], ok[:-1] & (gaps_h[1:] == gaps_h[:-1])])
    first_gap = np.flatnonzero(ok & ~continues)  # each run's first gap
    run_len = np.diff(np.append(np.cumsum(ok)[first_gap] - 1, ok.sum()))  # its plausible gaps (up to the next)
    confirmed = first_gap[run_len >= min_run]
    values, keys = gaps_h[confirmed], key[confirmed]
    changed = np.ones(len(keys), dtype=bool)
    changed[1:] = (keys[1:] != keys[:-1]) | (values[1:] != values[:-1])
    rows, interval_h = confirmed[changed] + 1, values[changed]  # at the settlement after the run's first gap
    # a key of exactly two settlements whose one gap is plausible, where nothing was confirmed
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.zeros(0, np.int64)
    sizes = np.diff(np.append(starts, len(key)))
    two = starts[sizes == 2]
    two = two[ok[two] & ~np.isin(key[two], key[rows])]
    rows, interval_h = np.concatenate([rows, two + 1]), np.concatenate([interval_h, gaps_h[two]])
    at = np.lexsort((ts[rows], key[rows]))
    rows, interval_h = rows[at], interval_h[at]
    picked = order[rows]
    return pd.DataFrame(
        {
            "exchange": frame["exchange"].to_numpy()[picked],
            "symbol": frame["symbol"].to_numpy()[picked],
            "ts_ms": ts[rows],
            "interval_h": interval_h.astype(float),
            "cap": np.nan,
            "floor": np.nan,
            "source": "inferred",
        },
        columns=OBSERVATION_COLUMNS,
    )


def intervals_in_force(ts_ms: np.ndarray, min_run: int = 3) -> np.ndarray:
    """The funding interval in force at each settlement of one instrument (times in ms, sorted), inferred from
    their spacing: the last interval confirmed by `min_run` plausible gaps in a row at or before it (the first
    confirmed one for settlements before it). An off-grid settlement (an extra one on a volatile day, 03:00
    on an 8h venue) keeps the interval in force; a missed settlement is not a longer interval. A settlement
    after an implausible gap (a hole, or a schedule moving) that the next settlement follows at the interval
    confirmed there opens that interval. NaN where no interval is confirmed: a guess is not an interval.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    frame = pd.DataFrame({"exchange": "", "symbol": "", "funding_ts_ms": ts})
    found = infer_intervals(frame, min_run)
    if found.empty:
        return np.full(len(ts), np.nan)
    starts = found["ts_ms"].to_numpy(dtype=np.int64)
    values = found["interval_h"].to_numpy(dtype=float)
    out = values[np.maximum(np.searchsorted(starts, ts, side="right") - 1, 0)]
    gaps_h = np.round(np.diff(ts) / HOUR_MS * 4) / 4
    before_ok = np.concatenate([[False], np.isin(gaps_h, PLAUSIBLE_INTERVALS_H)])[:-1]
    opens = ~before_ok & (gaps_h == out[1:])  # rows 0..n-2: an odd gap before, the next one's interval after
    out[:-1] = np.where(opens, out[1:], out[:-1])
    return out


def observation(
    exchange: str,
    symbol: str,
    ts_ms: int,
    interval_h: float,
    cap: float | None = None,
    floor: float | None = None,
    source: str = "reported",
) -> dict[str, Any]:
    return {
        "exchange": exchange,
        "symbol": symbol,
        "ts_ms": ts_ms,
        "interval_h": interval_h,
        "cap": np.nan if cap is None else cap,
        "floor": np.nan if floor is None else floor,
        "source": source,
    }


def market_funding_info(market: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(interval_h, cap, floor) from a ccxt market structure's venue `info`, where the venue publishes them.

    bybit: `fundingInterval` (minutes), `upperFundingRate` / `lowerFundingRate`;
    binance fundingInfo: `fundingIntervalHours`, `adjustedFundingRateCap` / `adjustedFundingRateFloor`;
    the simulator: `fundingIntervalHours`, `fundingCap`, `fundingFloor` (and `fundingIntervalHistory`, see
    `market_interval_history`).
    """
    info = market.get("info") or {}
    interval_h = None
    if info.get("fundingIntervalHours") not in (None, ""):
        interval_h = float(info["fundingIntervalHours"])
    elif info.get("fundingInterval") not in (None, ""):
        interval_h = float(info["fundingInterval"]) / 60.0
    cap = _first_float(info, ("upperFundingRate", "adjustedFundingRateCap", "fundingRateCap", "fundingCap"))
    floor = _first_float(info, ("lowerFundingRate", "adjustedFundingRateFloor", "fundingRateFloor", "fundingFloor"))
    return interval_h, cap, floor


def market_interval_history(market: Mapping[str, Any]) -> list[tuple[int, float]]:
    """[(ts_ms, interval_h)] observations from a published interval history (`info.fundingIntervalHistory`
    as [[start_ms, hours], ...], meaning settlements after start_ms use hours), for `build_intervals`.

    Spans are keyed by settlement time and looked up LOOKUP_TOLERANCE late, so each change is placed half an
    hour after its start: a settlement exactly at the start still belongs to the interval before.
    """
    info = market.get("info") or {}
    out = []
    for entry in info.get("fundingIntervalHistory") or []:
        try:
            start, hours = int(entry[0]), float(entry[1])
        except (TypeError, ValueError, IndexError):
            continue
        if hours > 0:
            out.append((start + HOUR_MS // 2, hours))
    return out


def _first_float(info: Mapping[str, Any], names: Iterable[str]) -> float | None:
    for name in names:
        value = info.get(name)
        if value not in (None, ""):
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
    return None


def registry_observations(registry: InstrumentRegistry) -> pd.DataFrame:
    """Interval observations from the registry's interval history of every perp (what captures observed)."""
    rows = []
    for instrument in registry:
        if not instrument.is_perp:
            continue
        for span in registry.interval_history(instrument.exchange, instrument.symbol):
            source = "inferred" if span.source == "inferred" else "reported"  # an inference stays one
            rows.append(
                observation(instrument.exchange, instrument.symbol, span.valid_from_ms, span.interval_h, source=source)
            )
    return pd.DataFrame(rows, columns=OBSERVATION_COLUMNS)


def market_observations(markets: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """Published interval/cap/floor from ccxt markets ({exchange: {symbol: market}}), observed 'now' (ts_ms 0:
    `interval_spans` places them), plus any published interval history (source "history")."""
    rows = []
    for exchange, by_symbol in markets.items():
        for symbol, market in by_symbol.items():
            interval_h, cap, floor = market_funding_info(market)
            for start_ms, hours in market_interval_history(market):
                rows.append(observation(exchange, symbol, start_ms, hours, cap, floor, source="history"))
            if interval_h is None and cap is None and floor is None:
                continue
            # Caps without an interval still matter: they ride on whatever interval is known (NaN here).
            rows.append(
                observation(exchange, symbol, 0, interval_h if interval_h else np.nan, cap, floor, source="market")
            )
    return pd.DataFrame(rows, columns=OBSERVATION_COLUMNS)


def interval_spans(
    reported: pd.DataFrame, settlements: pd.DataFrame, registry: pd.DataFrame, market: pd.DataFrame
) -> pd.DataFrame:
    """The interval history (`INTERVAL_COLUMNS`) from all the evidence: intervals reported with funding rows
    (`exchange, symbol, ts_ms, interval_h`), the registry's and the markets' observations, and before any
    report the spacing of settlements (`exchange, symbol, funding_ts_ms`)."""
    reported = reported.assign(cap=np.nan, floor=np.nan, source="reported")
    market_intervals = market.dropna(subset=["interval_h"]) if not market.empty else market
    observations = (
        pd.concat([f for f in (reported, registry, market_intervals) if not f.empty], ignore_index=True)
        if any(not f.empty for f in (reported, registry, market_intervals))
        else reported
    )
    if not market_intervals.empty and not observations.empty:
        # A market's current interval applies to the next settlement: place it half an hour after the last
        # one seen. Keys with a published history (source "history") already have it in force.
        last = settlements.groupby(["exchange", "symbol"])["funding_ts_ms"].max()
        with_history = set(map(tuple, market.loc[market["source"] == "history", ["exchange", "symbol"]].values))
        is_market = observations["source"] == "market"
        keys = list(zip(observations.loc[is_market, "exchange"], observations.loc[is_market, "symbol"], strict=True))
        observations.loc[is_market, "ts_ms"] = [int(last.get(k, 0)) + HOUR_MS // 2 for k in keys]
        drop = pd.Series(False, index=observations.index)
        drop.loc[is_market] = [k in with_history for k in keys]
        observations = observations[~drop]
    inferred = infer_intervals(settlements)
    return apply_market_caps(build_intervals(observations, inferred), market)


def apply_market_caps(spans: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
    """Fill cap/floor of spans from market info where the streams gave none (market info is today's)."""
    if market.empty or spans.empty:
        return spans
    caps = market.dropna(subset=["cap"]).drop_duplicates(["exchange", "symbol"]).set_index(["exchange", "symbol"])
    out = spans.copy()
    for i, row in out.iterrows():
        key = (row["exchange"], row["symbol"])
        if key in caps.index and pd.isna(row["cap"]):
            out.at[i, "cap"] = caps.loc[key, "cap"]
            out.at[i, "floor"] = caps.loc[key, "floor"]
    return out


def build_intervals(reported: pd.DataFrame, inferred: pd.DataFrame | None = None) -> pd.DataFrame:
    """Interval spans (`INTERVAL_COLUMNS`) from observations (`OBSERVATION_COLUMNS`, ts_ms = settlement time).

    What a source reported wins: inferred observations are used only before a key's first reported one
    (history backfilled from before capture started). Consecutive observations of the same interval (and
    cap/floor) merge into one span; `valid_to` is the next span's start, NULL for the open one. Columns over
    every key at once (tests/core/test_funding.py holds it equal to a loop over each key's observations).
    """
    frames = [f for f in (reported, inferred) if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    obs = pd.concat(frames, ignore_index=True)
    obs = obs.dropna(subset=["interval_h", "exchange", "symbol"])
    obs = obs[obs["interval_h"] > 0]
    keys = ["exchange", "symbol"]
    first_reported = obs[obs["source"] != "inferred"].groupby(keys)["ts_ms"].min().rename("_cutoff")
    obs = obs.join(first_reported, on=keys)
    obs = obs[(obs["source"] != "inferred") | obs["_cutoff"].isna() | (obs["ts_ms"] < obs["_cutoff"])]
    obs = obs.sort_values([*keys, "ts_ms"], kind="stable").reset_index(drop=True)
    if obs.empty:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    # A cap known from one observation (market info) applies to the whole key until another says otherwise.
    for column in ("cap", "floor"):
        obs[column] = obs.groupby(keys)[column].ffill()
        obs[column] = obs.groupby(keys)[column].bfill()
    interval, cap, floor = (obs[c].to_numpy(dtype=float) for c in ("interval_h", "cap", "floor"))
    first_of_key = np.ones(len(obs), dtype=bool)
    first_of_key[1:] = (obs["exchange"].to_numpy()[1:] != obs["exchange"].to_numpy()[:-1]) | (
        obs["symbol"].to_numpy()[1:] != obs["symbol"].to_numpy()[:-1]
    )

    # Equal to the row before, two unknowns (NaN caps) equal: else two observations of one interval with no cap
    # never merged, which at one instant made a zero-length span and failed funding_intervals_has_no_overlaps.
    def same(values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(values), dtype=bool)
        out[1:] = (values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))
        return out

    opens = first_of_key | ~(same(interval) & same(cap) & same(floor))
    spans = obs[opens].reset_index(drop=True)
    last_of_key = np.ones(len(spans), dtype=bool)
    last_of_key[:-1] = first_of_key[opens][1:]
    valid_to = np.append(spans["ts_ms"].to_numpy(dtype=float)[1:], np.nan)
    valid_to[last_of_key] = np.nan
    out = spans.assign(
        valid_from=to_timestamp(spans["ts_ms"].astype(np.int64)).to_numpy(),
        valid_to=pd.to_datetime(pd.Series(valid_to), unit="ms").astype("datetime64[us]").to_numpy(),
        interval_h=interval[opens],
    )
    return out[INTERVAL_COLUMNS].reset_index(drop=True)


def interval_at(intervals: pd.DataFrame, keys: pd.DataFrame, ts_column: str = "funding_ts") -> pd.DataFrame:
    """For each row of `keys` (exchange, symbol, <ts_column>), the span in force: adds interval_h, cap, floor.

    Rows before a key's first span get the first span (the earliest evidence is the best there is); rows
    whose (exchange, symbol) has no interval history get NaN: callers must not invent one.
    """
    out = keys.copy()
    out["_row"] = np.arange(len(out))
    if out.empty or intervals.empty:
        for col in ("interval_h", "cap", "floor"):
            out[col] = np.nan
        return out.drop(columns="_row")
    left = out[["_row", "exchange", "symbol", ts_column]].copy()
    left["_t"] = pd.to_datetime(left[ts_column]).astype("datetime64[us]")
    right = intervals[["exchange", "symbol", "valid_from", "interval_h", "cap", "floor"]].copy()
    right["_t"] = pd.to_datetime(right["valid_from"]).astype("datetime64[us]")
    # (exchange, symbol) as one integer code on both sides: merge_asof `by` two string columns cost ~5 s of a
    # year of 300 perps' settlements (1.1 M rows), an integer key a fraction of it; the same matches.
    codes = _pair_codes(pd.concat([left[["exchange", "symbol"]], right[["exchange", "symbol"]]]))
    left["_key"], right["_key"] = codes[: len(left)], codes[len(left) :]
    merged = pd.merge_asof(
        left.sort_values("_t"),
        right.drop(columns=["exchange", "symbol"]).sort_values("_t"),
        on="_t",
        by="_key",
        direction="backward",
    ).set_index("_row")
    first = right.sort_values("_t").drop_duplicates(["exchange", "symbol"]).set_index(["exchange", "symbol"])
    missing = merged["interval_h"].isna()
    if missing.any():
        fill = first.reindex(pd.MultiIndex.from_frame(merged.loc[missing, ["exchange", "symbol"]]))
        for col in ("interval_h", "cap", "floor"):
            merged.loc[missing, col] = fill[col].to_numpy(dtype=float)
    for col in ("interval_h", "cap", "floor"):
        out[col] = merged[col].reindex(out["_row"]).to_numpy(dtype=float)
    return out.drop(columns="_row")


def _pair_codes(keys: pd.DataFrame) -> np.ndarray:
    """One integer per distinct (exchange, symbol) row of `keys` (a missing value is a value of its own)."""
    exchange, _ = pd.factorize(keys["exchange"])
    symbol, symbols = pd.factorize(keys["symbol"])
    return (exchange.astype(np.int64) + 1) * (len(symbols) + 1) + symbol + 1


# -- settled and predicted rates ------------------------------------------------------------------------
RATE_COLUMNS = [
    "exchange",
    "symbol",
    "funding_ts",
    "funding_ts_raw",
    "funding_rate",
    "interval_h",
    "rate_per_hour",
    "funding_apr",
    "predicted_rate",
    "predicted_at",
    "forecast_error",
    "mark_price",
    "index_price",
]


def settled_rates(settled: pd.DataFrame, intervals: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (exchange, symbol, settlement): the settled rate normalised with the interval in force.

    `settled`: exchange, symbol, funding_ts_ms (raw venue time), funding_rate, optional mark_price,
    index_price. Duplicates of one settlement (the same row from the stream and from history) collapse to
    the latest reported value. `predictions`: the `point_in_time_predictions` frame; the last prediction
    known strictly before the raw settlement time becomes `predicted_rate`, and `forecast_error` is settled
    minus predicted.
    """
    if settled.empty:
        return pd.DataFrame(columns=RATE_COLUMNS)
    frame = settled.copy()
    for col in ("mark_price", "index_price"):
        if col not in frame:
            frame[col] = np.nan
    frame["funding_ts_raw"] = to_timestamp(frame["funding_ts_ms"]).to_numpy()
    # Look the interval up at the raw time first, then key on the grid of that interval.
    frame["_lookup"] = frame["funding_ts_raw"] + LOOKUP_TOLERANCE
    frame = interval_at(intervals, frame, ts_column="_lookup")
    known = frame["interval_h"].notna()
    grid_interval = frame["interval_h"].where(known, 1.0).to_numpy()
    frame["funding_ts"] = to_timestamp(round_to_grid(frame["funding_ts_ms"].to_numpy(), grid_interval)).to_numpy()
    frame = frame.sort_values(["exchange", "symbol", "funding_ts", "funding_ts_raw"], kind="stable")
    frame = frame.drop_duplicates(["exchange", "symbol", "funding_ts"], keep="last")
    frame["rate_per_hour"] = per_hour(frame["funding_rate"], frame["interval_h"])
    frame["funding_apr"] = annualize(frame["funding_rate"], frame["interval_h"])
    frame = _attach_predictions(frame, predictions)
    return frame[RATE_COLUMNS].reset_index(drop=True)


def _attach_predictions(frame: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    frame = frame.copy()
    frame["predicted_rate"] = np.nan
    frame["predicted_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    if predictions is not None and not predictions.empty:
        pred = predictions[["exchange", "symbol", "funding_ts", "ts", "predicted_rate"]].copy()
        pred["funding_ts"] = pd.to_datetime(pred["funding_ts"]).astype("datetime64[us]")
        pred["ts"] = pd.to_datetime(pred["ts"]).astype("datetime64[us]")
        left = frame[["exchange", "symbol", "funding_ts", "funding_ts_raw"]].copy()
        left["_row"] = np.arange(len(left))
        joined = left.merge(pred, on=["exchange", "symbol", "funding_ts"], how="inner")
        joined = joined[joined["ts"] < joined["funding_ts_raw"]]
        last = joined.sort_values("ts", kind="stable").groupby("_row").tail(1).set_index("_row")
        rows = np.arange(len(frame))
        frame["predicted_rate"] = last["predicted_rate"].reindex(rows).to_numpy(dtype=float)
        frame["predicted_at"] = last["ts"].reindex(rows).to_numpy()
    frame["forecast_error"] = frame["funding_rate"] - frame["predicted_rate"]
    return frame


PREDICTION_COLUMNS = [
    "exchange",
    "symbol",
    "ts",
    "funding_ts",
    "predicted_rate",
    "next_predicted_rate",
    "interval_h",
    "rate_per_hour",
    "predicted_apr",
    "mark_price",
    "index_price",
]


def point_in_time_predictions(predicted: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Predicted (not yet settled) rates as they were known at each capture time `ts_ms`.

    `predicted`: exchange, symbol, ts_ms, funding_ts_ms, funding_rate, optional next_funding_rate,
    interval_h (as reported), mark_price, index_price. The reported interval wins; the history fills in
    where a source reported none. `funding_ts` is rounded to the grid like the settled rows, so a
    prediction joins the settlement it is about.
    """
    if predicted.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    frame = predicted.copy()
    for col in ("next_funding_rate", "mark_price", "index_price", "interval_h"):
        if col not in frame:
            frame[col] = np.nan
    frame["funding_ts_raw"] = to_timestamp(frame["funding_ts_ms"]).to_numpy()
    reported = frame["interval_h"].to_numpy(dtype=float)
    frame["_lookup"] = frame["funding_ts_raw"] + LOOKUP_TOLERANCE
    looked_up = interval_at(intervals, frame, ts_column="_lookup")["interval_h"].to_numpy(dtype=float)
    frame["interval_h"] = np.where(np.isfinite(reported) & (reported > 0), reported, looked_up)
    grid_interval = np.where(np.isfinite(frame["interval_h"]), frame["interval_h"], 1.0)
    frame["funding_ts"] = to_timestamp(round_to_grid(frame["funding_ts_ms"].to_numpy(), grid_interval)).to_numpy()
    frame["ts"] = to_timestamp(frame["ts_ms"]).to_numpy()
    frame["predicted_rate"] = frame["funding_rate"].astype(float)
    frame["next_predicted_rate"] = frame["next_funding_rate"].astype(float)
    frame["rate_per_hour"] = per_hour(frame["predicted_rate"], frame["interval_h"])
    frame["predicted_apr"] = annualize(frame["predicted_rate"], frame["interval_h"])
    frame = frame.sort_values(["exchange", "symbol", "ts", "funding_ts"], kind="stable")
    frame = frame.drop_duplicates(["exchange", "symbol", "ts", "funding_ts"], keep="last")
    return frame[PREDICTION_COLUMNS].reset_index(drop=True)


def history_rows(settled: pd.DataFrame, source: str) -> pd.DataFrame:
    """`funding_history` rows from settled entries (`exchange, symbol, funding_ts_ms, ...`): keyed on the
    settlement time rounded to the hour (the interval may not be known yet), tagged with the source kind."""
    out = settled.copy()
    out["funding_ts_ms"] = out["funding_ts_ms"].astype("int64")
    out["funding_ts"] = to_timestamp(round_to_grid(out["funding_ts_ms"].to_numpy(), 1.0)).to_numpy()
    out["source"] = source
    return out


def history_coverage(settled: pd.DataFrame, start_ms: int, end_ms: int) -> pd.DataFrame:
    """`coverage` of settled history by the intervals its own spacing shows (nothing else is known yet)."""
    return coverage(settled, build_intervals(infer_intervals(settled)), start_ms, end_ms)


def coverage(settled: pd.DataFrame, intervals: pd.DataFrame, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Settlements present vs expected per (exchange, symbol) in [start_ms, end_ms), by the interval in force."""
    rows = []
    for (exchange, symbol), group in settled.groupby(["exchange", "symbol"], sort=True):
        keys = pd.DataFrame({"exchange": [exchange], "symbol": [symbol], "t": [to_timestamp([start_ms]).iloc[0]]})
        interval_h = float(interval_at(intervals, keys, ts_column="t")["interval_h"].iloc[0])
        expected = (end_ms - start_ms) / (interval_h * HOUR_MS) if np.isfinite(interval_h) else np.nan
        present = int(group["funding_ts_ms"].between(start_ms, end_ms - 1).sum())
        rows.append(
            {
                "exchange": exchange,
                "symbol": symbol,
                "settlements": present,
                "expected": expected,
                "coverage_pct": 100.0 * present / expected if expected and np.isfinite(expected) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["exchange", "symbol", "settlements", "expected", "coverage_pct"])
