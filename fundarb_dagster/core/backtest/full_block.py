"""The full block simulator: the rules of engine.py for every grid point at once on `(G, P, T)` arrays.

`run_backtest` uses it (detail=True keeps the per-bar arrays the trade, position and book tables need); the
grid-sharing simulator (grid_block.py) must give the same aggregates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .block import Block, Legs, gather, leg_costs, pair_mark, pair_parts, pair_pnl, shift

# the per-bar arrays of detail=True, besides the PnL parts
DETAIL = (
    "seg",
    "A",
    "H",
    "D",
    "q",
    "xa",
    "xb",
    "pnl",
    "liq_a",
    "liq_b",
    "stopped",
    "liq_a_px",
    "liq_b_px",
    "e_a",
    "e_b",
)


# the per-bar arrays of detail=True under sizing by capacity: which bound sized each cell, the capital left unused
SIZED = ("size_src", "unused")


def simulate_full(
    block: Block, g: dict[str, np.ndarray], detail: bool, halt: np.ndarray | None = None, mark: bool = False
) -> dict[str, Any]:
    """The rules of engine.py on one block of pairs, arrays `(G, P, T)`; grid fields `g` shaped `(G, 1, 1)`.

    halt `(G, 1, 1)`: rule 6's bar per grid point from which every pair is flat (T: never; None: no stop).
    mark: also return `mark_t` `(G, T)`, rule 6's marked PnL per bar (`block.pair_mark`)."""
    la, lb = block.la, block.lb
    P, T = block.sig.shape
    G = g["enter_apr"].shape[0]
    shape = (G, P, T)
    lev, stop = g["leverage"], g["stop_distance"]

    # 1.-2. desired direction, episodes, holding limit, rebalance segments
    D = block.direction(g["enter_apr"], g["exit_apr"])
    sidx, H, seg = block.episodes(D, g["max_hold_h"], g["rebalance_h"])

    # 3. sizing: equal units on both legs (the notional's worth at the segment's start, or a fixed size)
    even = block.notional(1.0 / lev)  # (G, P, 1)
    notional, size_src = block.sized(even, sidx)  # sizing by capacity: capped at the entry's capacity
    if size_src is not None:  # a capacity of 0: the episode is not entered
        H = H * (notional > 0)
    e_a, e_b = gather(la.mid, seg), gather(lb.mid, seg)
    held = H != 0
    if block.units > 0:  # a fixed size in units of the underlying, whatever the price
        q = np.where(held, block.units, 0.0)
    else:
        q = np.divide(notional, e_a, out=np.zeros(shape), where=held)

    # 5. liquidation and stop events on the hypothetical (never-stopped) path; rule 2 after the first one
    brk_a, stop_a, liq_a_prev, mmr_a = _leg_events(-H * q, e_a, la, seg, lev, stop)
    brk_b, stop_b, liq_b_prev, mmr_b = _leg_events(H * q, e_b, lb, seg, lev, stop)
    A = _alive(H, sidx, held, brk_a | brk_b | stop_a | stop_b)
    if halt is not None:  # rule 6: flat from the drawdown stop's bar on
        A = A * (np.arange(T) < halt)
    Ap = shift(A, 0)
    open_prev = Ap != 0
    liq_a, liq_b = brk_a & open_prev, brk_b & open_prev
    stopped = (stop_a | stop_b) & open_prev & ~(liq_a | liq_b)

    # 4. accounting
    xa = -A * q  # q is finite everywhere (0 where never held)
    xb = A * q
    pa_ = leg_costs(xa, shift(xa, 0.0), liq_a, liq_a_prev, la.mid, la.mid_prev, la.cash, la.fee, la.hs,
                    la.taker, mmr_a, block.borrow_a, block.bar_h)  # fmt: skip
    pb_ = leg_costs(xb, shift(xb, 0.0), liq_b, liq_b_prev, lb.mid, lb.mid_prev, lb.cash, lb.fee, lb.hs,
                    lb.taker, mmr_b, block.borrow_b, block.bar_h)  # fmt: skip
    parts = pair_parts(pa_, pb_)
    pnl = pair_pnl(parts)
    zeros_t = np.zeros((G, T))
    out: dict[str, Any] = {
        "pnl_t": pnl.sum(axis=1),
        "parts": {k: (v.sum(axis=(1, 2)) if np.ndim(v) else np.zeros(G)) for k, v in parts.items()},
        "parts_t": {k: (v.sum(axis=1) if np.ndim(v) else zeros_t) for k, v in parts.items()},
        "in_market": (A != 0).any(axis=1),
        "gross_exposure": (np.abs(xa) * la.mid + np.abs(xb) * lb.mid).sum(axis=1),
        "entries": ((A != 0) & (Ap != A)).sum(axis=(1, 2)),
        "held_pair_bars": (A != 0).sum(axis=(1, 2)),
        "liquidations": (liq_a | liq_b).sum(axis=(1, 2)),
        "stops": stopped.sum(axis=(1, 2)),
    }
    if mark:
        out["mark_t"] = np.broadcast_to(pair_mark(pa_, pb_, parts), shape).sum(axis=1)
    if detail:
        full = {k: (v if np.ndim(v) else np.zeros(shape)) for k, v in parts.items()}
        out["detail"] = {
            "seg": seg, "A": A, "H": H, "D": D, "q": q, "xa": xa, "xb": xb, "pnl": pnl, "liq_a": liq_a,
            "liq_b": liq_b, "stopped": stopped, "liq_a_px": liq_a_prev, "liq_b_px": liq_b_prev, "e_a": e_a,
            "e_b": e_b, "parts": full,
        }  # fmt: skip
        if size_src is not None:  # per cell: which bound sized it, and the capital it left unused
            out["detail"]["size_src"] = size_src
            out["detail"]["unused"] = block.capital_per_pair * (1.0 - notional / even)
    return out


def _leg_events(
    x_h: np.ndarray, e: np.ndarray, leg: Legs, seg: np.ndarray, lev: np.ndarray, stop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rule 5 for one leg holding `x_h` `(G, P, T)` on the never-stopped path, entered (or last resized) at
    price `e`: the bars where its liquidation price is breached, where the risk stop fires, that price, and the
    maintenance rate forfeited at it (the flat mmr, or the tier's `mmr - maintenance_amount / notional`)."""
    shape = x_h.shape
    x_prev = shift(x_h, 0.0)
    if not leg.is_perp.any():
        none = np.zeros(shape, dtype=bool)
        return none, none, np.full(shape, np.nan), leg.mmr
    cum = np.cumsum(-x_prev * leg.cash, axis=-1)
    size = np.abs(x_h)
    wallet = size * e / lev + cum - gather(cum, seg)
    # accounting.liquidation_price, inlined: flat legs (size 0) get a finite dummy never used
    per_unit = np.divide(wallet, size, out=np.zeros(shape), where=size > 0)
    liq_long = (e - per_unit) / (1.0 - leg.mmr - leg.taker)
    liq = liq_long + ((e + per_unit) / (1.0 + leg.mmr + leg.taker) - liq_long) * (x_h < 0)
    mmr_prev: np.ndarray = leg.mmr
    if any(t is not None for t in leg.tiers):
        mmr = np.broadcast_to(leg.mmr, shape).copy()
        for p, schedule in enumerate(leg.tiers):
            if schedule is not None:
                liq[:, p], mmr[:, p] = tiered_liquidation(
                    e[:, p], per_unit[:, p], size[:, p], x_h[:, p] < 0, schedule, float(leg.taker[p, 0])
                )
        mmr_prev = shift(mmr, 0.0)
    liq_prev = shift(liq, np.nan)
    short, long = x_prev < 0, x_prev > 0
    with np.errstate(invalid="ignore"):
        breach = (short & (leg.high >= liq_prev)) | (long & (leg.low <= liq_prev))
    breach &= leg.is_perp
    if not (np.asarray(stop) > 0).any():
        return breach, np.zeros(shape, dtype=bool), liq_prev, mmr_prev
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = (liq_prev - leg.ref) * (2.0 * short - 1.0) / leg.ref
    stopped = (stop > 0) & (short | long) & (dist <= stop) & leg.is_perp & ~breach
    return breach, stopped, liq_prev, mmr_prev


def tiered_liquidation(
    e: np.ndarray, per_unit: np.ndarray, size: np.ndarray, short: np.ndarray, schedule: np.ndarray, fee: float
) -> tuple[np.ndarray, np.ndarray]:
    """The liquidation price under leverage tiers, and the maintenance rate forfeited there. The maintenance
    margin of notional N is `N x mmr_k - amount_k` for the tier k whose (min, max] holds N, the notional at the
    liquidation price itself (continuous in N, so exactly one tier's solution lies in its own tier):

        short: P = (e + wallet/size + amount_k/size) / (1 + mmr_k + fee)
        long:  P = (e - wallet/size - amount_k/size) / (1 - mmr_k - fee)

    A solution at or below 0 (a long that cannot be liquidated) keeps tier 1's; one past the top tier the top's."""
    with np.errstate(invalid="ignore", divide="ignore"):
        add = np.divide(schedule[:, 3][:, None, None], size, out=np.zeros((len(schedule), *size.shape)),
                        where=size > 0)  # fmt: skip
        c = schedule[:, 2][:, None, None] + fee
        prices = np.where(short, (e + per_unit + add) / (1.0 + c), (e - per_unit - add) / (1.0 - c))
        notional = size * prices
        inside = (notional > schedule[:, 0][:, None, None]) & (notional <= schedule[:, 1][:, None, None])
    beyond = np.where(notional[-1] > schedule[-1, 1], len(schedule) - 1, 0)
    k = np.where(inside.any(axis=0), inside.argmax(axis=0), beyond)
    price = np.take_along_axis(prices, k[None], axis=0)[0]
    held = size * price
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = schedule[k, 2] - np.divide(schedule[k, 3], held, out=np.zeros(size.shape), where=held > 0)
    return price, rate


def _alive(H: np.ndarray, sidx: np.ndarray, held: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Rule 2 after an event: from an episode's first liquidation or stop to its end the pair is flat.
    Returns A, the direction actually held."""
    ev_ep = np.multiply(events & (shift(H, 0) != 0), shift(sidx, -1) + 1, dtype=np.int64)
    ev_ep -= 1  # the episode (start index) of each event, -1 where none
    np.maximum.accumulate(ev_ep, axis=-1, out=ev_ep)
    killed = held & (ev_ep == sidx)
    return H * ~killed
