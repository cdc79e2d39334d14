"""A plain, readable event loop of the backtest accounting: one pair, one bar at a time, explicit state.

It implements the rules documented in core/backtest/engine.py independently (no shared helpers besides the
data containers), so that the vectorized engine can be checked against it to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np

from fundarb_dagster.core.backtest.engine import BacktestParams
from fundarb_dagster.core.backtest.panel import Panel
from fundarb_dagster.core.backtest.strategies import PairSet


def _liq_price(entry: float, wallet: float, units: float, mmr: float, fee: float) -> float:
    size = abs(units)
    if units < 0:
        return (entry + wallet / size) / (1 + mmr + fee)
    return (entry - wallet / size) / (1 - mmr - fee)


def reference_backtest(panel: Panel, pairs: PairSet, p: BacktestParams) -> dict:
    T, P = pairs.signal.shape
    bar_h = panel.bar_h
    max_bars = math.ceil(p.max_hold_h / bar_h - 1e-9) if p.max_hold_h > 0 else 0
    reb_bars = math.ceil(p.rebalance_h / bar_h - 1e-9) if p.rebalance_h > 0 else 0
    pnl = np.zeros((T, P))
    direction = np.zeros((T, P), dtype=int)
    totals = dict.fromkeys(("basis", "funding", "borrow", "fees", "slippage", "liquidation"), 0.0)
    liquidations = 0
    entries = 0
    final_wallets: dict[tuple[int, int], float] = {}  # (pair, leg) -> isolated wallet of a perp open at the end
    for j in range(P):
        legs = []
        for idx in (pairs.leg_a[j], pairs.leg_b[j]):
            m = panel.markets[idx]
            fee = m.taker_fee if p.execution == "taker" else m.maker_fee
            legs.append({"i": idx, "perp": m.is_perp, "fee": fee, "taker": m.taker_fee, "mmr": m.mmr})
        per_leg_cost = sum(1.0 / p.leverage if leg["perp"] else 1.0 for leg in legs)
        notional = p.capital / P / per_leg_cost
        pos_on = neg_on = False
        d_prev = 0
        episode_start = -1
        dead = False
        held = 0  # current direction actually held
        units = 0.0
        seg_start = -1
        entry = [0.0, 0.0]
        wallet = [0.0, 0.0]
        for t in range(T):
            # --- the bar (t-1, t]: mark to market, funding, liquidation, borrow -------------------------------
            liq = [False, False]
            liq_px = [0.0, 0.0]
            stop_hit = False
            x_prev = [-held * units, held * units]
            if held != 0:
                for k, leg in enumerate(legs):
                    if not leg["perp"]:
                        continue
                    lp = _liq_price(entry[k], wallet[k], x_prev[k], leg["mmr"], leg["taker"])
                    liq_px[k] = lp
                    i = leg["i"]
                    if (x_prev[k] < 0 and panel.ref_high[t, i] >= lp) or (x_prev[k] > 0 and panel.ref_low[t, i] <= lp):
                        liq[k] = True
                if not any(liq) and p.stop_distance > 0:
                    for k, leg in enumerate(legs):
                        if leg["perp"]:
                            ref = panel.ref[t, leg["i"]]
                            dist = (liq_px[k] - ref) / ref if x_prev[k] < 0 else (ref - liq_px[k]) / ref
                            if dist <= p.stop_distance:
                                stop_hit = True
                for k, leg in enumerate(legs):
                    i = leg["i"]
                    end = liq_px[k] if liq[k] else panel.mid[t, i]
                    b = x_prev[k] * (end - panel.mid[t - 1, i])
                    pnl[t, j] += b
                    totals["basis"] += b
                    if not liq[k]:
                        f = -x_prev[k] * panel.funding_cash[t, i]
                        pnl[t, j] += f
                        totals["funding"] += f
                        wallet[k] += f
                    if x_prev[k] < 0 and not leg["perp"]:
                        c = -x_prev[k] * panel.mid[t - 1, i] * pairs.borrow_apr[j] * bar_h / 8760.0
                        pnl[t, j] -= c
                        totals["borrow"] += c
            # --- the decision at t -------------------------------------------------------------------------
            s = pairs.signal[t, j]
            if not np.isfinite(s):
                pos_on = neg_on = False
            else:
                if s >= p.enter_apr:
                    pos_on = True
                elif s <= p.exit_apr:
                    pos_on = False
                shift = pairs.reverse_cost_apr[j]
                if pairs.allow_reverse[j] and s <= -(p.enter_apr + shift):
                    neg_on = True
                elif s >= -(p.exit_apr + shift):
                    neg_on = False
            d = int(pos_on) - int(neg_on)
            if any(liq) or stop_hit:
                dead = True  # the rest of this episode stays flat
                liquidations += int(any(liq))
            if d != 0 and d != d_prev:
                episode_start = t
                dead = False
            d_prev = d
            age = t - episode_start
            hyp = d if (max_bars == 0 or age < max_bars) else 0
            target = 0 if (dead or hyp == 0) else hyp
            new_seg = -1
            if target != 0:
                new_seg = episode_start + (age // reb_bars) * reb_bars if reb_bars else episode_start
            new_units = units
            if target != 0 and (target != held or new_seg != seg_start):
                assert new_seg == t, "a (re)sized position always starts at its segment's first bar"
                new_units = notional / panel.mid[t, legs[0]["i"]]
                if target != held:
                    entries += 1
            elif target == 0:
                new_units = 0.0
            x_new = [-target * new_units, target * new_units]
            for k, leg in enumerate(legs):
                i = leg["i"]
                if liq[k]:
                    close = abs(x_prev[k]) * liq_px[k]
                    fee = close * leg["taker"] + abs(x_new[k]) * panel.mid[t, i] * leg["fee"]
                    slip = abs(x_new[k]) * panel.mid[t, i] * _hs(panel, t, i, p)
                    pen = close * leg["mmr"]
                else:
                    traded = abs(x_new[k] - x_prev[k])
                    fee = traded * panel.mid[t, i] * leg["fee"] if traded else 0.0
                    slip = traded * panel.mid[t, i] * _hs(panel, t, i, p) if traded else 0.0
                    pen = 0.0
                pnl[t, j] -= fee + slip + pen
                totals["fees"] += fee
                totals["slippage"] += slip
                totals["liquidation"] += pen
            if target != 0 and (target != held or new_seg != seg_start):
                for k, leg in enumerate(legs):
                    entry[k] = panel.mid[t, leg["i"]]
                    wallet[k] = new_units * entry[k] / p.leverage
                seg_start = new_seg
            held, units = target, new_units
            direction[t, j] = held
        if held != 0:
            for k, leg in enumerate(legs):
                if leg["perp"]:
                    final_wallets[(j, k)] = wallet[k]
    equity = p.capital + np.cumsum(pnl.sum(axis=1))
    return {"equity": equity, "pnl": pnl, "direction": direction, "totals": totals, "liquidations": liquidations,
            "entries": entries, "final_wallets": final_wallets}  # fmt: skip


def _hs(panel: Panel, t: int, i: int, p: BacktestParams) -> float:
    if p.execution != "taker":
        return 0.0
    hs = panel.half_spread[t, i]
    return float(hs) if np.isfinite(hs) else p.slippage_bps / 1e4
