"""Perp vs spot basis per venue and underlying, with the half-spreads a trade would pay.

    basis_bps        = (perp_mid / spot_mid - 1) * 1e4        the cash-and-carry entry premium
    mark_index_bps   = (mark_price / index_price - 1) * 1e4   the venue's own premium (drives its funding)
    basis_apr        = basis (fraction) * 8760 / premium_period_h
    *_half_spread_bps = (ask - bid) / 2 / mid * 1e4           what crossing half the book costs per leg

`basis_apr` is the carry the basis implies at the venue's own payment rule: the funding a year of settlements
would pay if the premium persisted. A venue's funding pays a premium P once per `premium_period_h` hours
(`premium_period`): binance, bybit and okx charge `F = P + clamp(I - P)` every funding interval, so the period
is the interval in force (8 h, or 4 h / 1 h where a symbol settles more often); hyperliquid computes an 8-hour
rate and pays 1/8 of it every hour, so its period is 8 h although it settles hourly. The same basis is then
the same APR on an 8 h venue and on hyperliquid. Beyond the premium it ignores the interest term and the
clamp's dead band (`|P - I| <= 0.05 %` pays the interest rate only): it is what the premium is worth, not a
funding forecast.

Frames in, frames out; the bucketing of raw tickers is `last_quotes` (or the SQL that does the same).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fundarb_dagster.core.units import HOURS_PER_YEAR

from .funding import interval_at
from .instruments import split_multiplier
from .venues import venue_facts

TIMEFRAMES_S: dict[str, int] = {"1m": 60, "1h": 3600}
# Bucketed from quotes at 1m and 1h; at 8h only the venue's own 8h bars (imported klines) give a basis, so
# history of 8h klines alone (spot and COIN-M archives) has one too. An hourly partition holds the 8h bars
# that open in it.
BAR_TIMEFRAMES_S: dict[str, int] = {**TIMEFRAMES_S, "8h": 8 * 3600}
QUOTE_COLUMNS = ["exchange", "symbol", "ts", "bid", "ask", "mark_price", "index_price"]
BASIS_COLUMNS = [
    "exchange",
    "symbol",
    "timeframe",
    "ts",
    "underlying",
    "spot_symbol",
    "spot_bid",
    "spot_ask",
    "spot_mid",
    "perp_bid",
    "perp_ask",
    "perp_mid",
    "mark_price",
    "index_price",
    "basis_bps",
    "mark_index_bps",
    "interval_h",
    "basis_apr",
    "spot_half_spread_bps",
    "perp_half_spread_bps",
    "source",
]
BAR_COLUMNS = ["exchange", "symbol", "ts", "close"]


def underlying_of(symbol: str) -> str:
    """`1000PEPE/USDT:USDT` -> `PEPE`; `BTC/USDC` -> `BTC`."""
    return split_multiplier(symbol.split("/", 1)[0])[0]


def pair_instruments(instruments: pd.DataFrame) -> pd.DataFrame:
    """Perp -> spot pairs on the same venue (`exchange, symbol` in; `exchange, symbol, spot_symbol, underlying`).

    The spot leg is `BASE/QUOTE` of the perp `BASE/QUOTE:SETTLE`; when the venue lists no such spot, a spot
    of the same base in another dollar stablecoin (USDT, USDC, USD) stands in. Perps without spot are left out.
    """
    rows = []
    for exchange, group in instruments.groupby("exchange", sort=True):
        symbols = set(group["symbol"])
        spots = sorted(s for s in symbols if ":" not in s)
        for perp in sorted(s for s in symbols if ":" in s):
            pair = perp.split(":", 1)[0]
            base = pair.split("/", 1)[0]
            spot = pair if pair in spots else None
            if spot is None:
                spot = next((f"{base}/{q}" for q in ("USDT", "USDC", "USD") if f"{base}/{q}" in spots), None)
            if spot is not None:
                rows.append(
                    {"exchange": exchange, "symbol": perp, "spot_symbol": spot, "underlying": underlying_of(perp)}
                )
    return pd.DataFrame(rows, columns=["exchange", "symbol", "spot_symbol", "underlying"])


def last_quotes(tickers: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The last ticker of each instrument in each bucket (`ts` = bucket start), from `ts_ms` tickers."""
    step_ms = TIMEFRAMES_S[timeframe] * 1000
    frame = tickers.sort_values("ts_ms", kind="stable").copy()
    frame["bucket_ms"] = (frame["ts_ms"] // step_ms) * step_ms
    last = frame.groupby(["exchange", "symbol", "bucket_ms"], sort=True).tail(1)
    last = last.assign(ts=pd.to_datetime(last["bucket_ms"], unit="ms").astype("datetime64[us]"))
    return last[QUOTE_COLUMNS].reset_index(drop=True)


def premium_period(exchange: pd.Series, interval_h: pd.Series) -> pd.Series:
    """Hours over which each row's venue pays a premium once: the venue row's `premium_period_h` where it has
    one (hyperliquid: 8), else the funding interval in force (NaN where that is unknown)."""
    fixed = {e: venue_facts(e) for e in pd.unique(exchange)}
    period = exchange.map({e: (f.premium_period_h if f and f.premium_period_h else np.nan) for e, f in fixed.items()})
    return period.astype(float).fillna(interval_h.astype(float))


def half_spread_bps(bid: pd.Series, ask: pd.Series) -> pd.Series:
    mid = (bid + ask) / 2
    return (ask - bid) / 2 / mid * 1e4


def compute_basis(quotes: pd.DataFrame, pairs: pd.DataFrame, intervals: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Basis rows (`BASIS_COLUMNS`) from bucketed quotes (`QUOTE_COLUMNS`) of perps and their spot legs.

    Only buckets where both legs quoted produce a row (no forward fill: a stale spot quote is no basis).
    A one-sided or crossed book gives NaN spreads rather than a negative cost.
    """
    if quotes.empty or pairs.empty:
        return pd.DataFrame(columns=BASIS_COLUMNS)
    q = quotes.copy()
    q["ts"] = pd.to_datetime(q["ts"]).astype("datetime64[us]")
    bad = ~((q["bid"] > 0) & (q["ask"] >= q["bid"]))
    q.loc[bad, ["bid", "ask"]] = np.nan
    perp = pairs.merge(q, on=["exchange", "symbol"], how="inner").rename(columns={"bid": "perp_bid", "ask": "perp_ask"})
    spot = q[["exchange", "symbol", "ts", "bid", "ask"]].rename(
        columns={"symbol": "spot_symbol", "bid": "spot_bid", "ask": "spot_ask"}
    )
    out = perp.merge(spot, on=["exchange", "spot_symbol", "ts"], how="inner")
    out["timeframe"] = timeframe
    out["perp_mid"] = (out["perp_bid"] + out["perp_ask"]) / 2
    out["spot_mid"] = (out["spot_bid"] + out["spot_ask"]) / 2
    out["basis_bps"] = (out["perp_mid"] / out["spot_mid"] - 1) * 1e4
    out["mark_index_bps"] = (out["mark_price"] / out["index_price"] - 1) * 1e4
    out["interval_h"] = interval_at(intervals, out[["exchange", "symbol", "ts"]], ts_column="ts")[
        "interval_h"
    ].to_numpy()
    out["basis_apr"] = out["basis_bps"] / 1e4 * HOURS_PER_YEAR / premium_period(out["exchange"], out["interval_h"])
    out["spot_half_spread_bps"] = half_spread_bps(out["spot_bid"], out["spot_ask"])
    out["perp_half_spread_bps"] = half_spread_bps(out["perp_bid"], out["perp_ask"])
    out["source"] = "quotes"
    out = out.sort_values(["exchange", "symbol", "ts"], kind="stable")
    return out[BASIS_COLUMNS].reset_index(drop=True)


def basis_with_bars(quotes: pd.DataFrame, bars: pd.DataFrame, intervals: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Basis rows from quotes (`source = 'quotes'`) and, for the (perp, bucket) that no quotes priced, from the
    spot and perp bar closes of the bucket (`BAR_COLUMNS`; `source = 'bars'`): imported klines or trades give
    a basis too. A bar row has mids (the closes) and basis, no bid/ask, spreads, mark or index.
    """
    listed = pd.concat([quotes[["exchange", "symbol"]], bars[["exchange", "symbol"]]]).drop_duplicates()
    pairs = pair_instruments(listed)
    from_quotes = compute_basis(quotes, pairs, intervals, timeframe)
    if bars.empty:
        return from_quotes
    closes = bars.assign(bid=bars["close"], ask=bars["close"], mark_price=np.nan, index_price=np.nan)
    from_bars = compute_basis(closes[QUOTE_COLUMNS], pairs, intervals, timeframe)
    key = ["exchange", "symbol", "ts"]
    quoted = (
        pd.MultiIndex.from_frame(from_quotes[key]) if len(from_quotes) else pd.MultiIndex.from_tuples([], names=key)
    )
    from_bars = from_bars[~pd.MultiIndex.from_frame(from_bars[key]).isin(quoted)].copy()
    cols = ["spot_bid", "spot_ask", "perp_bid", "perp_ask", "spot_half_spread_bps", "perp_half_spread_bps"]
    from_bars[cols] = np.nan
    from_bars["source"] = "bars"
    frames = [f for f in (from_quotes, from_bars) if len(f)]
    if not frames:
        return from_quotes
    out = pd.concat(frames, ignore_index=True).sort_values(key, kind="stable")
    return out[BASIS_COLUMNS].reset_index(drop=True)


# -- dated futures: basis to expiry -----------------------------------------------------------------------
EXPIRY_BASIS_COLUMNS = [
    "exchange",
    "symbol",
    "ts",
    "expiry",
    "spot_symbol",
    "spot_mid",
    "future_mid",
    "days_to_expiry",
    "basis_bps",
    "basis_to_expiry_apr",
]
_DAY_MS = 86_400_000


def expiry_basis(quotes: pd.DataFrame, futures: pd.DataFrame) -> pd.DataFrame:
    """Dated futures against spot on the same venue: the cash-and-carry a future locks in until it expires.

        basis_bps            = (future_mid / spot_mid - 1) * 1e4
        basis_to_expiry_apr  = (future_mid / spot_mid - 1) * 365 / days_to_expiry   (simple, not compounded)

    `quotes`: bucketed quotes (`QUOTE_COLUMNS`, e.g. from `last_quotes`); `futures`: `exchange, symbol,
    expiry_ms` of the dated futures (the registry's `Instrument.expiry_ms`). The spot leg is paired as for
    perps (`pair_instruments`: `BASE/QUOTE`, else the base in another dollar stablecoin). Only buckets where
    both legs quoted a two-sided book give a row; at or after expiry the APR is NaN (nothing left to carry).
    """
    if quotes.empty or futures.empty:
        return pd.DataFrame(columns=EXPIRY_BASIS_COLUMNS)
    listed = pd.concat([futures[["exchange", "symbol"]], quotes[["exchange", "symbol"]]]).drop_duplicates()
    pairs = pair_instruments(listed)
    pairs = pairs.merge(futures[["exchange", "symbol", "expiry_ms"]], on=["exchange", "symbol"], how="inner")
    q = quotes.copy()
    q["ts"] = pd.to_datetime(q["ts"]).astype("datetime64[us]")
    q["mid"] = ((q["bid"] + q["ask"]) / 2).where((q["bid"] > 0) & (q["ask"] >= q["bid"]))
    future = pairs.merge(q[["exchange", "symbol", "ts", "mid"]], on=["exchange", "symbol"], how="inner")
    spot = q[["exchange", "symbol", "ts", "mid"]].rename(columns={"symbol": "spot_symbol", "mid": "spot_mid"})
    out = future.rename(columns={"mid": "future_mid"}).merge(spot, on=["exchange", "spot_symbol", "ts"], how="inner")
    out = out[out["future_mid"].notna() & out["spot_mid"].notna()].copy()
    ts_ms = out["ts"].astype("datetime64[ms]").astype("int64")
    out["days_to_expiry"] = (out["expiry_ms"] - ts_ms) / _DAY_MS
    premium = out["future_mid"] / out["spot_mid"] - 1
    out["basis_bps"] = premium * 1e4
    days = out["days_to_expiry"].where(out["days_to_expiry"] > 0)
    out["basis_to_expiry_apr"] = premium * 365 / days
    out["expiry"] = pd.to_datetime(out["expiry_ms"], unit="ms").astype("datetime64[us]")
    out = out.sort_values(["exchange", "symbol", "ts"], kind="stable")
    return out[EXPIRY_BASIS_COLUMNS].reset_index(drop=True)
