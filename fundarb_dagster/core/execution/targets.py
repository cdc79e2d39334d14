"""From signals to target positions, with the backtest's own rules, so live and backtest decide alike.

- The pairs and their signals come from the strategy registry (`core.backtest.strategies`): the trader builds
  a one-bar `Panel` of its markets (sorted by exchange and symbol, as `panel_from_tables` orders them) with
  the expected funding APR it just observed, and asks the strategy for its `PairSet`. Pair names, which leg is
  A, and the signal are therefore exactly the backtest's.
- The desired direction is the engine's rule 1 (`block.direction`, hysteresis on `enter_apr`/`exit_apr`,
  reverse where allowed), evaluated on a two-bar history whose first bar puts the hysteresis in the pair's
  current direction.
- The size is rule 3: the capital split evenly over the strategy's pairs, each pair's notional its share over
  (spot legs + perp legs / leverage), `q = notional / mid of leg A` at the entry, both legs `q` base units
  (rounded down to both legs' lots, `sizing.pair_quantity`). A pair already held in the desired direction
  keeps its size (the engine resizes only every `rebalance_h`, off here).
- At most `max_pairs` pairs are held, strongest signal first, and a market is a leg of one pair at a time
  (so the venue's position of a symbol is one pair's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..backtest.block import direction
from ..backtest.panel import Panel, make_market
from ..backtest.strategies import PairSet, get_strategy
from .sizing import LegMarket, pair_quantity


@dataclass(frozen=True)
class PairSpec:
    name: str
    a: LegMarket
    b: LegMarket
    allow_reverse: bool
    reverse_cost_apr: float

    @property
    def underlying(self) -> str:
        return self.a.base

    @property
    def markets(self) -> tuple[tuple[str, str], tuple[str, str]]:
        return (self.a.exchange, self.a.symbol), (self.b.exchange, self.b.symbol)


def market_key(leg: LegMarket) -> tuple[str, str]:
    return (leg.exchange, leg.symbol)


def one_bar_panel(
    markets: Sequence[LegMarket], mid: Mapping[tuple[str, str], float], apr: Mapping[tuple[str, str], float], ts_ms: int
) -> Panel:
    """A Panel of one bar: the markets sorted by (exchange, symbol), their mids and expected APRs (perps)."""
    ordered = sorted(markets, key=market_key)
    row = [market_key(m) for m in ordered]
    mids = np.array([[mid.get(k, np.nan) for k in row]], dtype=float)
    aprs = np.array([[apr.get(k, np.nan) if m.kind == "perp" else np.nan for k, m in zip(row, ordered, strict=True)]])
    zeros = np.zeros_like(mids)
    panel_markets = [make_market(m.exchange, m.symbol, m.base, m.kind) for m in ordered]
    return Panel(np.array([ts_ms]), panel_markets, mids, zeros * np.nan, mids, mids, mids, zeros, aprs)


def pair_set(strategy: str, panel: Panel, options: Mapping[str, object]) -> PairSet:
    return get_strategy(strategy).pairs(panel, dict(options))


def pair_specs(pairs: PairSet, panel: Panel, legs: Mapping[tuple[str, str], LegMarket]) -> list[PairSpec]:
    out = []
    for p, name in enumerate(pairs.names):
        a = panel.markets[int(pairs.leg_a[p])]
        b = panel.markets[int(pairs.leg_b[p])]
        out.append(
            PairSpec(
                name,
                legs[(a.exchange, a.symbol)],
                legs[(b.exchange, b.symbol)],
                bool(pairs.allow_reverse[p]),
                float(pairs.reverse_cost_apr[p]),
            )
        )
    return out


def desired_direction(
    current: int, signal: float, enter_apr: float, exit_apr: float, allow_reverse: bool, reverse_cost_apr: float
) -> int:
    """Rule 1 of the engine for one pair and one new signal, from the pair's current direction (-1, 0, +1)."""
    opening = {1: np.inf, -1: -np.inf, 0: np.nan}[int(np.sign(current))]
    history = np.array([[opening, signal]], dtype=float)
    d = direction(
        history,
        np.array([allow_reverse]),
        np.array([reverse_cost_apr]),
        np.array([enter_apr]).reshape(1, 1, 1),
        np.array([exit_apr]).reshape(1, 1, 1),
    )
    return int(d[0, 0, -1])


def pair_notional(capital_usd: float, n_pairs: int, a: LegMarket, b: LegMarket, leverage: float) -> float:
    """Rule 3: the pair's share of the capital over (spot legs + perp legs / leverage)."""
    cost = sum(1.0 / leverage if leg.kind == "perp" else 1.0 for leg in (a, b))
    return capital_usd / max(n_pairs, 1) / cost


@dataclass(frozen=True)
class Target:
    pair: str
    direction: int
    units: tuple[float, float]  # signed base units of legs A and B
    signal: float


def current_direction(units: tuple[float, float]) -> int:
    """The direction a pair holds: +1 when leg B is long (leg A short), -1 the reverse, 0 flat."""
    a, b = units
    return int(np.sign(b)) if b else int(np.sign(-a))


def choose_targets(
    specs: Sequence[PairSpec],
    signals: Sequence[float],
    held: Mapping[str, tuple[float, float]],
    mids: Mapping[tuple[str, str], float],
    *,
    enter_apr: float,
    exit_apr: float,
    capital_usd: float,
    leverage: float,
    max_pairs: int,
    reduce_only: bool = False,
) -> list[Target]:
    """Every pair's target: pairs that keep their direction first, then new entries by |signal| (see the module
    doc). `held`: pair -> current units. In reduce-only mode a pair may only stay or go flat."""
    rows = []
    for spec, signal in zip(specs, signals, strict=True):
        units = held.get(spec.name, (0.0, 0.0))
        current = current_direction(units)
        d = desired_direction(current, signal, enter_apr, exit_apr, spec.allow_reverse, spec.reverse_cost_apr)
        if reduce_only and d != current:
            d = 0
        rows.append((spec, d, current, units, float(signal)))
    rows.sort(key=lambda r: (not (r[1] == r[2] != 0), -abs(r[4]) if np.isfinite(r[4]) else 0.0))
    holding = {spec.name: set(spec.markets) for spec, _, _, units, _ in rows if any(units)}
    taken: set[tuple[str, str]] = set()
    n_open = 0
    out = []
    for spec, d, current, units, signal in rows:
        mine = set(spec.markets)
        if d != 0 and d == current:
            target = units
        elif d != 0:
            others = set().union(*(m for name, m in holding.items() if name != spec.name))
            q = 0.0
            if n_open < max_pairs and not mine & (taken | others):
                notional = pair_notional(capital_usd, len(specs), spec.a, spec.b, leverage)
                mid_a = mids.get(market_key(spec.a), np.nan)
                if np.isfinite(mid_a) and mid_a > 0:
                    q = pair_quantity(notional / mid_a, spec.a, spec.b, mid_a)
            target = (-d * q, d * q)
            d = d if q > 0 else 0
        if d == 0:
            out.append(Target(spec.name, 0, (0.0, 0.0), signal))
            continue
        taken |= mine
        n_open += 1
        out.append(Target(spec.name, d, target, signal))
    return out
