"""Live P&L and its attribution, split as the backtest splits it (funding, basis, fees, slippage).

For each fill (side s = +1 buy / -1 sell, amount q base units, price p, the mid m0 the trader saw when it sent
the order) and the mark m now (the mid or the venue's reference price at the time of the row):

    slippage = s q (p - m0)        what crossing the spread and the latency cost against the decision's mid
    basis    = s q (m - m0)        the position's price P&L from that mid (both legs: the basis moving)
    fees     = the fee (quote)
    funding  = what the venue booked (funding_payments), + received

    P&L = funding + basis - slippage - fees = funding + sum s q (m - p) - fees

A fill without a recorded mid (a trade not sent by this trader) counts its own price as the mid (no slippage).
Pure functions of the `fills` and `funding_payments` records (the landed streams or the warehouse tables).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

Key = tuple[str, str]
PARTS = ("funding", "basis", "fees", "slippage")


class PnL:
    """Running totals for the trader's progress line (the warehouse recomputes them from the tables)."""

    def __init__(self) -> None:
        self.funding = 0.0
        self.fees = 0.0
        self.slippage = 0.0
        self.cost_at_mid: dict[Key, float] = {}  # sum of s q m0 per market

    def add_fill(self, rec: Any) -> None:
        key = (rec["exchange"].decode(), rec["symbol"].decode())
        q = float(rec["side"]) * float(rec["amount"])
        price = float(rec["price"])
        mid = float(rec["ref_mid"]) if math.isfinite(float(rec["ref_mid"])) else price
        self.slippage += q * (price - mid)
        self.fees += float(rec["fee_usd"]) if math.isfinite(float(rec["fee_usd"])) else 0.0
        self.cost_at_mid[key] = self.cost_at_mid.get(key, 0.0) + q * mid

    def add_funding(self, amount: float) -> None:
        self.funding += amount

    def split(self, marks: Mapping[Key, float], units: Mapping[Key, float]) -> dict[str, float]:
        basis = 0.0
        for key, cost in self.cost_at_mid.items():
            mark = marks.get(key, math.nan)
            basis += (units.get(key, 0.0) * mark if math.isfinite(mark) else 0.0) - cost
        out = {"funding": self.funding, "basis": basis, "fees": self.fees, "slippage": self.slippage}
        out["total"] = out["funding"] + basis - self.fees - self.slippage
        return out


def attribution(
    fills: pd.DataFrame, funding: pd.DataFrame, marks: pd.DataFrame, grid: pd.DatetimeIndex
) -> pd.DataFrame:
    """Cumulative P&L parts at each time of `grid` (see the module doc).

    fills: ts, exchange, symbol, side, amount, price, ref_mid, fee_usd. funding: ts, amount. marks: ts,
    exchange, symbol, mark (the price each held market is marked at, from any source, taken as of each grid
    time: the last mark at or before it). Returns ts, funding, basis, fees, slippage, pnl, and
    units_<n> columns are not kept (the positions table has them)."""
    out = pd.DataFrame({"ts": grid})
    n = len(grid)
    if n == 0:
        return out.assign(**{p: pd.Series(dtype=float) for p in (*PARTS, "pnl")})
    t = grid.values.astype("datetime64[us]")
    fund = np.zeros(n)
    if len(funding):
        at = np.searchsorted(t, funding["ts"].values.astype("datetime64[us]"), side="left")
        np.add.at(fund, np.clip(at, 0, n - 1)[at < n], funding["amount"].to_numpy(float)[at < n])
    fees = np.zeros(n)
    slip = np.zeros(n)
    basis = np.zeros(n)
    for (exchange, symbol), rows in fills.groupby(["exchange", "symbol"], sort=True):
        ft = rows["ts"].values.astype("datetime64[us]")
        q = rows["side"].to_numpy(float) * rows["amount"].to_numpy(float)
        price = rows["price"].to_numpy(float)
        mid = rows["ref_mid"].to_numpy(float)
        mid = np.where(np.isfinite(mid), mid, price)
        at = np.searchsorted(t, ft, side="left")  # a fill counts from the first grid time at or after it
        keep = at < n
        np.add.at(slip, at[keep], (q * (price - mid))[keep])
        np.add.at(fees, at[keep], np.nan_to_num(rows["fee_usd"].to_numpy(float))[keep])
        units = np.zeros(n)
        cost = np.zeros(n)
        np.add.at(units, at[keep], q[keep])
        np.add.at(cost, at[keep], (q * mid)[keep])
        units, cost = np.cumsum(units), np.cumsum(cost)
        m = marks[(marks["exchange"] == exchange) & (marks["symbol"] == symbol)].sort_values("ts")
        mark = _as_of(m["ts"].values.astype("datetime64[us]"), m["mark"].to_numpy(float), t)
        basis += np.where(np.isfinite(mark), units * mark - cost, np.where(units == 0, -cost, np.nan))
    out["funding"] = np.cumsum(fund)
    out["basis"] = basis
    out["fees"] = np.cumsum(fees)
    out["slippage"] = np.cumsum(slip)
    out["pnl"] = out["funding"] + out["basis"] - out["fees"] - out["slippage"]
    return out


def _as_of(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    if len(times) == 0:
        return np.full(len(at), np.nan)
    pos = np.searchsorted(times, at, side="right") - 1
    return np.where(pos >= 0, values[np.clip(pos, 0, None)], np.nan)
