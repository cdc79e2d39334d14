"""Cross-venue perp-perp: short the perp where expected funding is high, long the one where it is low."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from ..panel import Panel
from .base import PairSet, register


@register
class PerpPerp:
    """Every pair of perps on the same underlying on different venues (leg A, leg B in panel order).
    Signal = expected APR of A minus expected APR of B, each annualized with its own interval (8h and 1h
    venues mix), so `signal > 0` shorts A / longs B and `signal < 0` the reverse. Each leg is paid on its
    own venue's real settlement times.

    options: `underlyings` (list or None: all), `exchanges` (list or None: all).
    """

    name = "perp_perp"

    def pairs(self, panel: Panel, options: dict[str, Any]) -> PairSet:
        wanted = options.get("underlyings")
        venues = options.get("exchanges")
        by_underlying: dict[str, list[int]] = {}
        for i, m in enumerate(panel.markets):
            if m.is_perp and (not wanted or m.underlying in wanted) and (not venues or m.exchange in venues):
                by_underlying.setdefault(m.underlying, []).append(i)
        names, a, b = [], [], []
        for underlying in sorted(by_underlying):
            for i, j in combinations(by_underlying[underlying], 2):
                if panel.markets[i].exchange == panel.markets[j].exchange:
                    continue
                names.append(
                    f"{panel.markets[i].exchange}:{panel.markets[i].symbol}|{panel.markets[j].exchange}:{panel.markets[j].symbol}"
                )
                a.append(i)
                b.append(j)
        a_idx, b_idx = np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
        signal = panel.expected_apr[:, a_idx] - panel.expected_apr[:, b_idx]
        signal[~(np.isfinite(panel.mid[:, a_idx]) & np.isfinite(panel.mid[:, b_idx]))] = np.nan
        n = len(names)
        return PairSet(
            names=names,
            leg_a=a_idx,
            leg_b=b_idx,
            signal=signal,
            allow_reverse=np.ones(n, dtype=bool),
            reverse_cost_apr=np.zeros(n),
            borrow_apr=np.zeros(n),
            borrow_source=["none"] * n,
        )
