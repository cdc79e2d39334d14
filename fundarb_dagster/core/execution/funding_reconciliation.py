"""Funding the model expects against funding the venue booked, per settlement and position, explained.

Model: at a settlement of (exchange, symbol) at time T, a position of `units` (signed base units, from the
trader's fills strictly before T: at one instant venues settle funding before they fill) receives

    expected = -units x rate x reference price        (core.backtest.accounting.funding_payment)

with `rate` the settled rate of the interval in force (funding_rates), and the reference price the venue
pays on (the mark; the oracle on venues whose `VenueFacts.funding_price` says so). Booked: the venue's
funding history (`funding_payments`), matched to the settlement nearest in time within a quarter of its
interval (venues stamp settlements with jitter; hyperliquid minutes late).

A payment on a position held after the last settlement the model has a rate for is `pending` (settled rates
come with the venues' history, fetched once a day has ended): neither a match nor a mismatch until the rate is
loaded and the window reconciled again. Otherwise a row is `ok` when |booked - expected| <= tolerance (default
one cent), else `mismatch` with what explains it, tried in this order:

- `missing payment`: a position was held and nothing was booked;
- `unexpected payment`: something was booked for a settlement the model has no position or rate for (a
  payment at a time off the model's schedule is `interval change`: the venue settles on another interval);
- `wrong sign`: booked = -expected;
- `interval change`: booked = expected x (the interval the payment's spacing shows / the interval in force),
  i.e. the venue paid for another interval length than the model assumes;
- `wrong reference price`: the sign is right and the price the payment implies (booked / (-units x rate))
  is another price than the reference (e.g. the mark where the venue pays on the oracle);
- else `unexplained`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..backtest.accounting import funding_payment

COLUMNS = [
    "exchange",
    "symbol",
    "funding_ts",
    "funding_ts_ms",
    "booked_ts_ms",
    "units",
    "funding_rate",
    "interval_h",
    "ref_price",
    "expected_usd",
    "booked_usd",
    "difference_usd",
    "implied_price",
    "status",
    "explanation",
]
DUST = 1e-9  # base units: below this a summed position is flat
PRICE_MATCH = 5e-4  # two prices are "the same" within 5 bp (a payment implies its price only that well)


def units_at(fills: pd.DataFrame, exchange: str, symbol: str, times_ms: np.ndarray) -> np.ndarray:
    """The position (signed base units) of a market just before each time, from fills (ts_ms, side, amount)."""
    rows = fills[(fills["exchange"] == exchange) & (fills["symbol"] == symbol)].sort_values("ts_ms", kind="stable")
    if rows.empty:
        return np.zeros(len(times_ms))
    cum = np.cumsum(rows["side"].to_numpy(float) * rows["amount"].to_numpy(float))
    cum[np.abs(cum) < DUST] = 0.0  # an exit's fills sum to float dust (3.6e-15), not a position held
    idx = np.searchsorted(rows["ts_ms"].to_numpy(np.int64), np.asarray(times_ms, dtype=np.int64), side="left") - 1
    return np.where(idx >= 0, cum[np.clip(idx, 0, None)], 0.0)


def reconcile(
    settlements: pd.DataFrame,
    payments: pd.DataFrame,
    fills: pd.DataFrame,
    tolerance_usd: float = 0.01,
) -> pd.DataFrame:
    """One row per settlement where a position was held or something was booked (`COLUMNS`).

    settlements: exchange, symbol, funding_ts (TIMESTAMP, the grid), funding_ts_ms (the venue's), funding_rate,
    interval_h, ref_price, other_price (another price the venue could have used, NaN if none). payments:
    exchange, symbol, ts_ms, amount. fills: exchange, symbol, ts_ms, side, amount (the trader's, all history).
    """
    out = []
    keys = set(zip(settlements["exchange"], settlements["symbol"], strict=True)) | set(
        zip(payments["exchange"], payments["symbol"], strict=True)
    )
    for exchange, symbol in sorted(keys):
        s = settlements[(settlements["exchange"] == exchange) & (settlements["symbol"] == symbol)]
        s = s.sort_values("funding_ts_ms", kind="stable").reset_index(drop=True)
        p = payments[(payments["exchange"] == exchange) & (payments["symbol"] == symbol)].sort_values("ts_ms")
        out.extend(_market(exchange, symbol, s, p, fills, tolerance_usd))
    frame = pd.DataFrame(out, columns=COLUMNS)
    frame["funding_ts"] = pd.to_datetime(frame["funding_ts"]).astype("datetime64[us]")
    return frame


def _market(
    exchange: str, symbol: str, s: pd.DataFrame, p: pd.DataFrame, fills: pd.DataFrame, tolerance: float
) -> list[list[object]]:
    times = s["funding_ts_ms"].to_numpy(np.int64)
    units = units_at(fills, exchange, symbol, times)
    expected = funding_payment(units, s["funding_rate"].to_numpy(float), s["ref_price"].to_numpy(float))
    window = (s["interval_h"].to_numpy(float) * 3_600_000 / 4).astype(np.int64) if len(s) else np.zeros(0, np.int64)
    booked = np.full(len(s), np.nan)
    booked_ts = np.full(len(s), -1, dtype=np.int64)
    unmatched = []
    for ts, amount in zip(p["ts_ms"].to_numpy(np.int64), p["amount"].to_numpy(float), strict=True):
        k = int(np.argmin(np.abs(times - ts))) if len(times) else -1
        if k >= 0 and abs(int(times[k]) - int(ts)) <= window[k] and np.isnan(booked[k]):
            booked[k], booked_ts[k] = amount, ts
        else:
            unmatched.append((ts, amount))
    rows = []
    for k in range(len(s)):
        if units[k] == 0 and np.isnan(booked[k]):
            continue
        rate, price, interval = (
            float(s["funding_rate"].iat[k]),
            float(s["ref_price"].iat[k]),
            float(s["interval_h"].iat[k]),
        )
        other = float(s["other_price"].iat[k]) if "other_price" in s else np.nan
        got = 0.0 if np.isnan(booked[k]) else float(booked[k])
        diff = got - float(expected[k])
        implied = got / (-units[k] * rate) if units[k] and rate else np.nan
        spacing = _spacing_h(p["ts_ms"].to_numpy(np.int64), int(booked_ts[k])) if booked_ts[k] >= 0 else np.nan
        status = "ok" if abs(diff) <= tolerance else "mismatch"
        why = (
            ""
            if status == "ok"
            else _explain(expected[k], booked[k], implied, price, other, interval, spacing, tolerance)
        )
        rows.append(
            [
                exchange,
                symbol,
                pd.Timestamp(s["funding_ts"].iat[k]),
                int(times[k]),
                int(booked_ts[k]) if booked_ts[k] >= 0 else None,
                float(units[k]),
                rate,
                interval,
                price,
                float(expected[k]),
                got,
                diff,
                implied,
                status,
                why,
            ]
        )
    latest = int(times.max()) if len(times) else -1
    for ts, amount in unmatched:
        if abs(amount) <= tolerance:
            continue
        held = float(units_at(fills, exchange, symbol, np.array([ts]))[0])
        spacing = _spacing_h(p["ts_ms"].to_numpy(np.int64), int(ts))
        intervals = s["interval_h"].to_numpy(float)
        off_schedule = len(intervals) and np.isfinite(spacing) and not np.isclose(spacing, intervals[-1])
        if held and ts > latest:  # a position was held; its settled rate is not loaded yet (venue history is daily)
            status, why = "pending", "settled rate not loaded yet"
        else:
            status, why = "mismatch", ("interval change" if off_schedule else "unexpected payment")
        rows.append(
            [
                exchange,
                symbol,
                pd.Timestamp(int(ts), unit="ms"),
                int(ts),
                int(ts),
                held,
                np.nan,
                np.nan,
                np.nan,
                0.0,
                float(amount),
                float(amount),
                np.nan,
                status,
                why,
            ]
        )
    return rows


def _spacing_h(times: np.ndarray, ts: int) -> float:
    """Hours between a payment and the one before it (NaN for the first)."""
    earlier = times[times < ts]
    return float(ts - earlier.max()) / 3_600_000 if len(earlier) else np.nan


def _explain(
    expected: float,
    booked: float,
    implied: float,
    price: float,
    other: float,
    interval: float,
    spacing: float,
    tolerance: float,
) -> str:
    if np.isnan(booked):
        return "missing payment"
    if abs(expected) <= tolerance:
        return "unexpected payment"
    if abs(booked + expected) <= max(tolerance, 1e-9 * abs(expected)):
        return "wrong sign"
    other_interval = np.isfinite(spacing) and spacing > 0 and not np.isclose(spacing, interval)
    if other_interval and abs(booked - expected * spacing / interval) <= max(tolerance, PRICE_MATCH * abs(expected)):
        return "interval change"
    if np.isfinite(implied) and booked * expected > 0 and abs(implied / price - 1) > PRICE_MATCH:
        if np.isfinite(other) and abs(implied / other - 1) <= PRICE_MATCH:
            return "wrong reference price (paid on the other price)"
        return "wrong reference price"
    return "unexplained"
