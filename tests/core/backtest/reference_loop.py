"""A plain, readable event loop of the backtest accounting: one bar at a time, every pair within it, explicit state.

It implements the rules documented in core/backtest/engine.py independently (no shared helpers besides the
data containers), so that the vectorized engine can be checked against it to 1e-9. Each bar has three steps:
mark every pair's open position over the bar (basis, funding, borrow, liquidation), check the book's drawdown
(rule 6: it needs every pair's mark), then decide and trade every pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fundarb_dagster.core.backtest.engine import BacktestParams
from fundarb_dagster.core.backtest.panel import Panel
from fundarb_dagster.core.backtest.strategies import PairSet


def _liq_price(entry: float, wallet: float, units: float, mmr: float, fee: float) -> float:
    size = abs(units)
    if units < 0:
        return (entry + wallet / size) / (1 + mmr + fee)
    return (entry - wallet / size) / (1 - mmr - fee)


@dataclass
class _Pair:
    """One pair's legs and state between bars."""

    legs: list[dict]
    notional: float
    pos_on: bool = False
    neg_on: bool = False
    d_prev: int = 0
    episode_start: int = -1
    dead: bool = False
    held: int = 0  # current direction actually held
    units: float = 0.0
    seg_start: int = -1
    entry: list[float] = field(default_factory=lambda: [0.0, 0.0])
    wallet: list[float] = field(default_factory=lambda: [0.0, 0.0])
    # this bar's marking, read by the decision
    liq: list[bool] = field(default_factory=lambda: [False, False])
    liq_px: list[float] = field(default_factory=lambda: [0.0, 0.0])
    stop_hit: bool = False


def reference_backtest(panel: Panel, pairs: PairSet, p: BacktestParams) -> dict:
    T, P = pairs.signal.shape
    bar_h = panel.bar_h
    max_bars = math.ceil(p.max_hold_h / bar_h - 1e-9) if p.max_hold_h > 0 else 0
    reb_bars = math.ceil(p.rebalance_h / bar_h - 1e-9) if p.rebalance_h > 0 else 0
    pnl = np.zeros((T, P))
    direction = np.zeros((T, P), dtype=int)
    totals = dict.fromkeys(("basis", "funding", "borrow", "fees", "slippage", "liquidation"), 0.0)
    counts = {"liquidations": 0, "entries": 0}
    book = []
    for j in range(P):
        legs = []
        for idx in (pairs.leg_a[j], pairs.leg_b[j]):
            m = panel.markets[idx]
            fee = m.taker_fee if p.execution == "taker" else m.maker_fee
            legs.append({"i": idx, "perp": m.is_perp, "fee": fee, "taker": m.taker_fee, "mmr": m.mmr})
        per_leg_cost = sum(1.0 / p.leverage if leg["perp"] else 1.0 for leg in legs)
        book.append(_Pair(legs, p.capital / P / per_leg_cost))
    equity, peak, halt = p.capital, p.capital, T
    for t in range(T):
        # 1. the bar (t-1, t] of every pair: mark to market, funding, liquidation, borrow
        marked = equity + sum(_mark(panel, pairs, p, t, j, book[j], pnl, totals) for j in range(P))
        # 2. rule 6: the book's drawdown, marked before this bar's trades, against the peak so far
        if halt == T and p.drawdown_stop > 0 and 1 - marked / max(peak, marked) >= p.drawdown_stop:
            halt = t
        # 3. the decision at t of every pair, and its trades
        for j in range(P):
            _decide(panel, pairs, p, t, j, book[j], t >= halt, max_bars, reb_bars, pnl, totals, counts)
            direction[t, j] = book[j].held
        equity += pnl[t].sum()
        peak = max(peak, equity)
    final_wallets = {
        (j, k): pair.wallet[k] for j, pair in enumerate(book) if pair.held != 0 for k in (0, 1) if pair.legs[k]["perp"]
    }
    return {"equity": p.capital + np.cumsum(pnl.sum(axis=1)), "pnl": pnl, "direction": direction, "totals": totals,
            "liquidations": counts["liquidations"], "entries": counts["entries"], "final_wallets": final_wallets,
            "halt": halt}  # fmt: skip


def _mark(panel: Panel, pairs: PairSet, p: BacktestParams, t: int, j: int, s: _Pair, pnl, totals) -> float:
    """Step 1 for pair j: its PnL over the bar before any trade at t (also booked into pnl and totals)."""
    s.liq, s.liq_px, s.stop_hit = [False, False], [0.0, 0.0], False
    if s.held == 0:
        return 0.0
    before = pnl[t, j]
    x_prev = [-s.held * s.units, s.held * s.units]
    for k, leg in enumerate(s.legs):
        if not leg["perp"]:
            continue
        lp = _liq_price(s.entry[k], s.wallet[k], x_prev[k], leg["mmr"], leg["taker"])
        s.liq_px[k] = lp
        i = leg["i"]
        if (x_prev[k] < 0 and panel.ref_high[t, i] >= lp) or (x_prev[k] > 0 and panel.ref_low[t, i] <= lp):
            s.liq[k] = True
    if not any(s.liq) and p.stop_distance > 0:
        for k, leg in enumerate(s.legs):
            if leg["perp"]:
                ref = panel.ref[t, leg["i"]]
                dist = (s.liq_px[k] - ref) / ref if x_prev[k] < 0 else (ref - s.liq_px[k]) / ref
                if dist <= p.stop_distance:
                    s.stop_hit = True
    for k, leg in enumerate(s.legs):
        i = leg["i"]
        end = s.liq_px[k] if s.liq[k] else panel.mid[t, i]
        b = x_prev[k] * (end - panel.mid[t - 1, i])
        pnl[t, j] += b
        totals["basis"] += b
        if not s.liq[k]:
            f = -x_prev[k] * panel.funding_cash[t, i]
            pnl[t, j] += f
            totals["funding"] += f
            s.wallet[k] += f
        else:  # closed at the liquidation price: the taker fee on it, and the maintenance margin is lost
            close = abs(x_prev[k]) * s.liq_px[k]
            pnl[t, j] -= close * leg["taker"] + close * leg["mmr"]
            totals["fees"] += close * leg["taker"]
            totals["liquidation"] += close * leg["mmr"]
        if x_prev[k] < 0 and not leg["perp"]:
            c = -x_prev[k] * panel.mid[t - 1, i] * pairs.borrow_apr[j] * panel.bar_h / 8760.0
            pnl[t, j] -= c
            totals["borrow"] += c
    return pnl[t, j] - before


def _decide(
    panel: Panel,
    pairs: PairSet,
    p: BacktestParams,
    t: int,
    j: int,
    s: _Pair,
    halted: bool,
    max_bars: int,
    reb_bars: int,
    pnl,
    totals,
    counts,
) -> None:
    """Step 3 for pair j: rules 1-3 (and 6 when halted) decide the position at t; trade to it at mid."""
    x_prev = [-s.held * s.units, s.held * s.units]
    sig = pairs.signal[t, j]
    if not np.isfinite(sig):
        s.pos_on = s.neg_on = False
    else:
        if sig >= p.enter_apr:
            s.pos_on = True
        elif sig <= p.exit_apr:
            s.pos_on = False
        shift = pairs.reverse_cost_apr[j]
        if pairs.allow_reverse[j] and sig <= -(p.enter_apr + shift):
            s.neg_on = True
        elif sig >= -(p.exit_apr + shift):
            s.neg_on = False
    d = int(s.pos_on) - int(s.neg_on)
    if any(s.liq) or s.stop_hit:
        s.dead = True  # the rest of this episode stays flat
        counts["liquidations"] += int(any(s.liq))
    if d != 0 and d != s.d_prev:
        s.episode_start = t
        s.dead = False
    s.d_prev = d
    age = t - s.episode_start
    hyp = d if (max_bars == 0 or age < max_bars) else 0
    target = 0 if (s.dead or hyp == 0 or halted) else hyp
    new_seg = -1
    if target != 0:
        new_seg = s.episode_start + (age // reb_bars) * reb_bars if reb_bars else s.episode_start
    new_units = s.units
    resized = target != 0 and (target != s.held or new_seg != s.seg_start)
    if resized:
        assert new_seg == t, "a (re)sized position always starts at its segment's first bar"
        new_units = s.notional / panel.mid[t, s.legs[0]["i"]]
        if target != s.held:
            counts["entries"] += 1
    elif target == 0:
        new_units = 0.0
    x_new = [-target * new_units, target * new_units]
    for k, leg in enumerate(s.legs):
        i = leg["i"]
        # a liquidated leg was closed in step 1: only a new position trades here
        traded = abs(x_new[k]) if s.liq[k] else abs(x_new[k] - x_prev[k])
        fee = traded * panel.mid[t, i] * leg["fee"] if traded else 0.0
        slip = traded * panel.mid[t, i] * _hs(panel, t, i, p) if traded else 0.0
        pnl[t, j] -= fee + slip
        totals["fees"] += fee
        totals["slippage"] += slip
    if resized:
        for k, leg in enumerate(s.legs):
            s.entry[k] = panel.mid[t, leg["i"]]
            s.wallet[k] = new_units * s.entry[k] / p.leverage
        s.seg_start = new_seg
    s.held, s.units = target, new_units


def _hs(panel: Panel, t: int, i: int, p: BacktestParams) -> float:
    if p.execution != "taker":
        return 0.0
    hs = panel.half_spread[t, i]
    return float(hs) if np.isfinite(hs) else p.slippage_bps / 1e4
