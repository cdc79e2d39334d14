"""The venues' leverage tiers as a point-in-time table: ccxt's structures -> rows with validity intervals.

`fetch_leverage_tiers` gives each perp's brackets now (ccxt's unified structure, see `execution/tiers.py`).
Venues change them (a risk-limit review, a new listing's first months), so the table keeps each schedule with
the interval it was seen in force: `valid_from` when it was first fetched, `valid_to` when a different one
replaced it (NULL while current). A reader asks for the tiers valid at a time (`valid_at`), and the tier a
notional falls in is the first whose `max_notional` holds it (`tier_for`): the maintenance margin of notional
N is `N x mmr - maintenance_amount`, continuous across tier edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .execution.tiers import maintenance_amounts

TIER_COLUMNS = ["exchange", "symbol", "tier", "min_notional", "max_notional", "mmr", "maintenance_amount",
                "max_leverage", "valid_from", "valid_to"]  # fmt: skip
_SCHEDULE = ["tier", "min_notional", "max_notional", "mmr", "max_leverage"]


def tier_rows(exchange: str, symbol: str, tiers: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """ccxt leverage-tier structures of one market -> rows (without the validity columns), ascending."""
    rows = sorted(
        (
            (
                int(t["tier"]),
                float(t.get("minNotional") or 0.0),
                float(t["maxNotional"]),
                float(t["maintenanceMarginRate"]),
                float(t["maxLeverage"]),
            )  # fmt: skip
            for t in tiers
        ),
        key=lambda r: r[2],
    )
    frame = pd.DataFrame(rows, columns=_SCHEDULE)
    frame.insert(0, "symbol", symbol)
    frame.insert(0, "exchange", exchange)
    frame["maintenance_amount"] = maintenance_amounts(list(zip(frame["max_notional"], frame["mmr"], strict=True)))
    return frame


def merge_history(current: pd.DataFrame, fetched: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """The table after a fetch at `now`: a market whose fetched schedule equals its current one keeps its rows;
    a changed one has its current rows closed (`valid_to = now`) and the new ones opened (`valid_from = now`);
    a market not fetched keeps what it had (a failed fetch is no change)."""
    now = pd.Timestamp(now)
    kept = current[TIER_COLUMNS].copy() if len(current) else empty_tiers()
    opened = []
    for (exchange, symbol), new in fetched.groupby(["exchange", "symbol"], sort=True):
        market = (kept["exchange"] == exchange) & (kept["symbol"] == symbol) & kept["valid_to"].isna()
        if market.any() and _same(kept[market], new):
            continue
        kept.loc[market, "valid_to"] = now
        rows = new.copy()
        rows["valid_from"], rows["valid_to"] = now, pd.NaT
        opened.append(rows[TIER_COLUMNS])
    frame = pd.concat([kept, *opened], ignore_index=True) if opened else kept
    for column in ("valid_from", "valid_to"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    return frame.sort_values(["exchange", "symbol", "valid_from", "tier"], ignore_index=True)


def empty_tiers() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in TIER_COLUMNS})


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    left = a.sort_values("tier")[_SCHEDULE].to_numpy(dtype=float)
    right = b.sort_values("tier")[_SCHEDULE].to_numpy(dtype=float)
    return left.shape == right.shape and bool(np.allclose(left, right, rtol=0, atol=1e-12))


def _dtype(column: str) -> str:
    if column in ("exchange", "symbol"):
        return "object"
    if column == "tier":
        return "int64"
    return "datetime64[us]" if column.startswith("valid_") else "float64"


def valid_at(tiers: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """The rows in force at `at`: `valid_from <= at < valid_to` (an open interval has no end)."""
    at = pd.Timestamp(at)
    mask = (tiers["valid_from"] <= at) & (tiers["valid_to"].isna() | (tiers["valid_to"] > at))
    return tiers[mask]


def tier_for(schedule: pd.DataFrame, notional: float) -> pd.Series:
    """The row of a market's schedule that `|notional|` falls in: the first with `max_notional >= |notional|`
    (a notional exactly at a tier's top is in that tier); past the top tier, the top tier."""
    ordered = schedule.sort_values("max_notional")
    holding = ordered[ordered["max_notional"] >= abs(notional)]
    return holding.iloc[0] if len(holding) else ordered.iloc[-1]
