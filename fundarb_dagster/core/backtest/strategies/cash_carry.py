"""Cash-and-carry on one venue: long spot, short the perp of equal size while the expected funding is high."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..panel import Panel
from .base import PairSet, register


@register
class CashCarry:
    """Pairs each perp with the spot market of the same underlying on the same venue (leg A = perp, leg B =
    spot). Signal = the perp's expected funding APR known at t. Reverse carry (long perp, short spot) only
    where `borrow_apr` is configured: it is charged on the borrowed spot and raises the reverse thresholds.

    options: `borrow_apr` (float or None; None: no reverse carry), `underlyings` (list or None: all).
    """

    name = "cash_carry"

    def pairs(self, panel: Panel, options: dict[str, Any]) -> PairSet:
        borrow = options.get("borrow_apr")
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
        return PairSet(
            names=names,
            leg_a=a_idx,
            leg_b=b_idx,
            signal=signal,
            allow_reverse=np.full(n, has_borrow),
            reverse_cost_apr=np.full(n, float(borrow) if has_borrow else 0.0),
            borrow_apr=np.full(n, float(borrow) if has_borrow else 0.0),
        )
