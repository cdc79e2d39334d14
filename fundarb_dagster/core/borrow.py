"""Spot borrow rates as a point-in-time table: ccxt's borrow-rate structures -> rows, and the rate in force.

A reverse cash-and-carry (funding negative: long the perp, short the spot) borrows the asset it sells. Venues
publish the rate per period (`fetch_cross_borrow_rate`, `fetch_borrow_rate_history`; ccxt's unified structure
`{currency, rate, period (ms), timestamp}`: binance quotes a daily rate, others an hourly one), so a row keeps
the venue's rate and period and the two comparable forms:

    rate_per_h = rate x HOUR_MS / period          borrow_apr = rate_per_h x 8760

(simple interest, as venues charge it: hourly on the borrowed amount, no compounding). A rate observed at `ts`
is in force from `ts` until the next row of the same (exchange, currency): `rates_as_of` takes the last row at
or before a time, `rate_path` the rate in force at each of many times (point in time: never a later row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .units import HOUR_MS, HOURS_PER_YEAR

BORROW_ROW_COLUMNS = ["exchange", "currency", "ts", "ts_ms", "rate", "period_h", "rate_per_h", "borrow_apr"]


def borrow_rows(exchange: str, entries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """ccxt borrow-rate structures of one exchange -> rows (`BORROW_ROW_COLUMNS`, ascending by time).

    An entry without a currency, a timestamp, a finite rate >= 0 or a period > 0 is an error naming the field
    and its value (a venue answering nonsense must not become a free borrow)."""
    rows = []
    for entry in entries:
        currency, ts_ms, rate, period = (entry.get(k) for k in ("currency", "timestamp", "rate", "period"))
        for name, value, ok in (
            ("currency", currency, isinstance(currency, str) and bool(currency)),
            ("timestamp", ts_ms, isinstance(ts_ms, int | float) and np.isfinite(ts_ms)),
            ("rate", rate, isinstance(rate, int | float) and np.isfinite(rate) and rate >= 0),
            ("period", period, isinstance(period, int | float) and period > 0),
        ):
            if not ok:
                raise ValueError(f"borrow rate from {exchange}: {name} {value!r} is not usable in {dict(entry)!r}")
        rows.append((exchange, currency, int(ts_ms), float(rate), float(period) / HOUR_MS))  # type: ignore[arg-type]
    frame = pd.DataFrame(rows, columns=["exchange", "currency", "ts_ms", "rate", "period_h"])
    frame["ts"] = pd.to_datetime(frame["ts_ms"], unit="ms").astype("datetime64[us]")
    frame["rate_per_h"] = frame["rate"] / frame["period_h"]
    frame["borrow_apr"] = frame["rate_per_h"] * HOURS_PER_YEAR
    return frame[BORROW_ROW_COLUMNS].sort_values(["exchange", "currency", "ts_ms"], ignore_index=True)


def rates_as_of(rows: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The rate in force at `as_of` per (exchange, currency): its last row at or before it, as the rows
    `opportunities.BorrowRates.with_captured` reads (exchange, asset, borrow_apr) plus its ts."""
    known = rows[pd.to_datetime(rows["ts"]) <= pd.Timestamp(as_of)]
    last = known.sort_values("ts").groupby(["exchange", "currency"], sort=True).tail(1)
    out = last.rename(columns={"currency": "asset"})[["exchange", "asset", "borrow_apr", "ts"]]
    return out.sort_values(["exchange", "asset"], ignore_index=True)


def rate_path(rows: pd.DataFrame, exchange: str, currency: str, ts_ms: np.ndarray) -> np.ndarray:
    """The borrow APR in force at each time of `ts_ms` (epoch ms) for one (exchange, currency): the last row
    with `ts_ms <= t`; NaN before the first row (unknown, not zero)."""
    own = rows[(rows["exchange"] == exchange) & (rows["currency"] == currency)].sort_values("ts_ms")
    times = own["ts_ms"].to_numpy(dtype=np.int64)
    idx = np.searchsorted(times, np.asarray(ts_ms, dtype=np.int64), side="right") - 1
    aprs = own["borrow_apr"].to_numpy(dtype=float)
    return np.where(idx >= 0, aprs[np.clip(idx, 0, None)] if len(aprs) else np.nan, np.nan)
