"""What the trader decides on: each pair's signal (expected carry, APR; `signal > 0` shorts leg A).

- `own`: the strategy's signal on what the trader just fetched, i.e. each perp's current predicted funding
  rate annualised with its interval in force, put through the strategy (`targets.pair_set`): the backtest's
  `expected_apr` at the decision's bar, so live and backtest decide alike.
- `warehouse`: the latest rows of the `opportunities` table (read read-only, waiting while the pipeline holds
  the file), their `expected_carry_apr` signed by which leg they short. A pair the table does not rank has no
  view (NaN: it is left or kept flat by rule 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..warehouse import connect
from .sizing import LegMarket
from .targets import PairSpec, one_bar_panel, pair_set

Key = tuple[str, str]


def own_signals(
    strategy: str,
    specs: Sequence[PairSpec],
    legs: Sequence[LegMarket],
    mids: Mapping[Key, float],
    aprs: Mapping[Key, float],
    options: Mapping[str, object],
    ts_ms: int,
) -> list[float]:
    """The strategy's signal of each pair in `specs` for one bar of observations."""
    panel = one_bar_panel(legs, mids, aprs, ts_ms)
    pairs = pair_set(strategy, panel, options)
    by_name = {name: float(pairs.signal[0, p]) for p, name in enumerate(pairs.names)}
    return [by_name.get(spec.name, math.nan) for spec in specs]


OPPORTUNITY_QUERY = """
SELECT strategy, long_exchange, long_symbol, short_exchange, short_symbol, expected_carry_apr
FROM opportunities
WHERE as_of = (SELECT max(as_of) FROM opportunities) AND strategy = $strategy
"""


def warehouse_signals(
    database: str | Path, strategy: str, specs: Sequence[PairSpec], timeout_s: float = 60.0
) -> list[float]:
    """Signals from the latest `opportunities` (see the module doc)."""
    conn = connect(str(database), read_only=True, timeout_s=timeout_s)
    try:
        exists = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'opportunities'"
        ).fetchone()[0]
        rows = conn.execute(OPPORTUNITY_QUERY, {"strategy": strategy}).fetchall() if exists else []
    finally:
        conn.close()
    return signals_from_opportunities(rows, specs)


def signals_from_opportunities(rows: Sequence[Sequence[object]], specs: Sequence[PairSpec]) -> list[float]:
    """rows: (strategy, long_exchange, long_symbol, short_exchange, short_symbol, expected_carry_apr)."""
    view: dict[str, float] = {}
    for spec in specs:
        a, b = spec.markets
        for _, le, ls, se, ss, apr in rows:
            short, long_ = (se, ss), (le, ls)
            if (short, long_) == (a, b):
                view[spec.name] = float(apr)  # short A, long B: the positive direction
            elif (short, long_) == (b, a):
                view[spec.name] = -float(apr)
    return [view.get(spec.name, np.nan) for spec in specs]
