"""Cash-and-carry on one venue: long spot, short the perp of equal size while the expected funding is high."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...borrow import rate_path
from ..panel import Panel
from .base import PairSet, register


@register
class CashCarry:
    """Pairs each perp with the spot market of the same underlying on the same venue (leg A = perp, leg B =
    spot). Signal = the perp's expected funding APR known at t. Reverse carry (long perp, short spot) only
    where a borrow rate is known: it is charged on the borrowed spot and raises the reverse thresholds.

    options: `borrow_apr` (float or None: the configured rate), `borrow_rates` (rows of the `borrow_rates`
    table or None: the captured ones), `underlyings` (list or None: all).

    Point in time: the rate that raises the thresholds at bar t is the one in force at `ts_ms[t]` (captured,
    else the configured one); the rate charged over the bar ending at t is the one in force at its start,
    `ts_ms[t-1]`. Where neither is known the reverse side is not held (its threshold is infinite).
    """

    name = "cash_carry"

    def pairs(self, panel: Panel, options: dict[str, Any]) -> PairSet:
        borrow = options.get("borrow_apr")
        captured = options.get("borrow_rates")
        wanted = options.get("underlyings")
        spot_of = {(m.exchange, m.underlying): i for i, m in enumerate(panel.markets) if m.kind == "spot"}
        names, a, b = [], [], []
        for i, m in enumerate(panel.markets):
            if not m.is_perp or (wanted and m.underlying not in wanted):
                continue
            j = spot_of.get((m.exchange, m.underlying))
            if j is None:
                continue
            names.append(f"{m.exchange}:{m.symbol}|{m.exchange}:{panel.markets[j].symbol}")
            a.append(i)
            b.append(j)
        a_idx, b_idx = np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
        signal = panel.expected_apr[:, a_idx].copy()
        signal[~(np.isfinite(panel.mid[:, a_idx]) & np.isfinite(panel.mid[:, b_idx]))] = np.nan
        n = len(names)
        has_borrow = borrow is not None
        if captured is None or captured.empty:
            return PairSet(
                names=names,
                leg_a=a_idx,
                leg_b=b_idx,
                signal=signal,
                allow_reverse=np.full(n, has_borrow),
                reverse_cost_apr=np.full(n, float(borrow) if has_borrow else 0.0),
                borrow_apr=np.full(n, float(borrow) if has_borrow else 0.0),
                borrow_source=["configured" if has_borrow else "none"] * n,
            )
        known, sources = borrow_paths(panel, b_idx, captured, borrow)
        charged = np.vstack([known[:1], known[:-1]])  # over the bar ending at t: the rate in force at t-1
        return PairSet(
            names=names,
            leg_a=a_idx,
            leg_b=b_idx,
            signal=signal,
            allow_reverse=np.isfinite(known).any(axis=0),
            reverse_cost_apr=np.where(np.isfinite(known), known, np.inf),
            borrow_apr=np.nan_to_num(charged, nan=0.0),
            borrow_source=sources,
        )


def borrow_paths(
    panel: Panel, spot_idx: np.ndarray, captured: pd.DataFrame, configured: float | None
) -> tuple[np.ndarray, list[str]]:
    """The borrow APR in force at each bar `(T, P)` for the spot leg of each pair (its venue and base
    currency): the captured rate (`borrow.rate_path`) where one is in force, else the configured one (NaN
    without either); and per pair which it used (captured, configured, captured+configured or none)."""
    out = np.full((len(panel.ts_ms), len(spot_idx)), np.nan)
    sources = []
    for k, j in enumerate(spot_idx):
        market = panel.markets[j]
        path = rate_path(captured, market.exchange, market.symbol.split("/")[0], panel.ts_ms)
        got = np.isfinite(path)
        if configured is not None:
            path = np.where(got, path, float(configured))
        out[:, k] = path
        used = [name for name, on in (("captured", got.any()), ("configured", configured is not None and
                not got.all())) if on]  # fmt: skip
        sources.append("+".join(used) or "none")
    return out, sources
