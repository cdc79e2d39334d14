"""The grid-sharing block simulator (engine.simulate(detail=False): sweeps).

It returns only the aggregates the metrics need, for every grid point, sharing work across the grid. Grid
points are grouped by everything but the leverage (enter, exit, max_hold, rebalance, stop). Per group,
computed once: the never-stopped path H (rules 1-3) at unit notional, its accounting, and the event
thresholds of `_event_threshold`. Per leverage L: events are `k >= 1 / L`, and the kill mask (rest of the
episode after its first event) follows. A cell whose position and the one before are both alive is the
pair's notional times the unit path (every item is linear in the units held and traded), a cell dead on both
sides is zero, and the few cells where the path changes (event bars, the bar after a killed stretch) are
priced exactly by the same `leg_costs` as the full simulator (full_block.py). The aggregates equal the full
simulator's to ~1e-14 of capital: only the order of floating-point sums differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..units import HOURS_PER_YEAR
from .block import PARTS, Block, Legs, gather, leg_costs, pair_mark, pair_parts, pair_pnl, shift

# Blocks of pairs of about this many (pair x bar) cells. There is no grid axis in these arrays (grid points are
# visited one by one, sharing their group's arrays). Measured: a single point runs ~2x faster in cache-sized
# blocks (block.BLOCK_CELLS), a grid ~25 % faster in larger ones (per-point Python overhead amortized over more
# cells).
SWEEP_BLOCK_CELLS = 250_000


def _adverse_extremes(leg: Legs, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """Rule 5 folded into one price per side and bar, stored at the bar *before* (where the position that is
    checked was decided): a short leg is hit when `max(high, ref (1 + stop))` reaches its liquidation price
    (breach or risk stop), a long one at `min(low, ref (1 - stop))`; pre-multiplied by the liquidation
    condition's `1 +- (mmr + fee)`. Depends on neither the signal parameters nor the leverage."""
    c = leg.mmr + leg.taker
    hi, lo = np.empty(leg.high.shape), np.empty(leg.low.shape)
    hi[:, -1] = lo[:, -1] = np.nan  # nothing after the last bar
    if stop > 0:  # fmax/fmin: a missing high still lets the stop on the reference close fire, and vice versa
        np.multiply(leg.ref[:, 1:], 1.0 + stop, out=hi[:, :-1])
        np.fmax(hi[:, :-1], leg.high[:, 1:], out=hi[:, :-1])
        np.multiply(leg.ref[:, 1:], 1.0 - stop, out=lo[:, :-1])
        np.fmin(lo[:, :-1], leg.low[:, 1:], out=lo[:, :-1])
    else:
        hi[:, :-1], lo[:, :-1] = leg.high[:, 1:], leg.low[:, 1:]
    hi[:, :-1] *= 1.0 + c
    lo[:, :-1] *= 1.0 - c
    return hi, lo


def _event_threshold(short: np.ndarray, e: np.ndarray, dc: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Leverage-free form of rule 5 for one perp leg: `k[t]` such that the position held at t is liquidated or
    stopped at t+1 exactly when `1 / L <= k[t]`.

    The liquidation price uses `wallet / size = e / L + F`, where F, the funding received per unit since the
    last resize (`-sign(x) dc`, dc = cumulative funding cash since then), does not depend on L. A short's
    `high (1 + c) >= e + e / L + F` becomes `1 / L <= (high (1 + c) - e - F) / e`, a long's
    `low (1 - c) <= e - e / L - F` becomes `1 / L <= (e - F - low (1 - c)) / e`. Meaningless where flat (the
    caller masks those)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(short, hi - e - dc, e + dc - lo)  # F = dc for a short, -dc for a long
        k /= e
    return k  # NaN (missing prices) compares False: no event, as in the full engine


@dataclass
class _UnitRows:
    """Per block: the pair arrays the unit path's items are products with, and the rows (row 0: the PnL, then
    `names`) rewritten in place for every group."""

    pair_arr: dict[str, Any]
    names: list[str]
    stacked: np.ndarray
    pair_cls: np.ndarray  # pairs with the same kinds of legs carry the same notional at a given leverage
    classes: np.ndarray

    @classmethod
    def of(cls, block: Block) -> _UnitRows:
        la, lb = block.la, block.lb
        P, T = block.sig.shape
        # per pair: the unit path's items are products of the units of leg b (leg a holds the opposite) with these
        pair_arr: dict[str, Any] = {
            "dmid": lb.dmid - la.dmid,  # basis per unit held over the bar
            "dcash": la.cash - lb.cash,  # funding received per unit: -x_a cash_a - x_b cash_b with x_a = -x_b
            "fee": la.fee_px + lb.fee_px,  # per unit traded on both legs
            "slip": la.slip_px + lb.slip_px,
            "mids": la.mid + lb.mid,
        }
        names = ["basis", "funding", "fees", "slippage", "traded_notional"]
        if (block.borrow_a > 0).any() or (block.borrow_b > 0).any():
            # a short spot leg pays borrow: leg a is short when leg b is long, and vice versa
            per_bar = block.bar_h / HOURS_PER_YEAR
            pair_arr["borrow"] = (la.mid_prev * (block.borrow_a * per_bar), lb.mid_prev * (block.borrow_b * per_bar))
            names.append("borrow")
        pair_cls = la.is_perp[:, 0].astype(int) * 2 + lb.is_perp[:, 0].astype(int)
        return cls(pair_arr, names, np.empty((1 + len(names), P, T)), pair_cls, np.unique(pair_cls))

    def write(self, xb: np.ndarray, xb_p: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The rows of the unit path (leg b holds `xb`, leg a `-xb`), summed per class of pair."""
        stacked, pair_arr = self.stacked, self.pair_arr
        # with leg a = -leg b every item is one product with a per-pair array prepared once per block
        traded = np.abs(xb - xb_p)  # units traded on each leg
        row = dict(zip(self.names, stacked[1:], strict=True))
        np.multiply(xb_p, pair_arr["dmid"], out=row["basis"])
        np.multiply(xb_p, pair_arr["dcash"], out=row["funding"])
        np.multiply(traded, pair_arr["fee"], out=row["fees"])
        np.multiply(traded, pair_arr["slip"], out=row["slippage"])
        np.multiply(traded, pair_arr["mids"], out=row["traded_notional"])
        np.add(row["basis"], row["funding"], out=stacked[0])
        stacked[0] -= row["fees"]
        stacked[0] -= row["slippage"]
        if "borrow" in row:
            long_b, short_b = pair_arr["borrow"]
            np.multiply(np.maximum(xb_p, 0.0), long_b, out=row["borrow"])
            row["borrow"] += np.maximum(-xb_p, 0.0) * short_b
            stacked[0] -= row["borrow"]
        # every clean cell is the pair's notional times its unit row: sum the rows per class of pair once per
        # group (the notional depends only on the leverage and which legs are perps)
        return [
            (cls, stacked.sum(axis=1) if len(self.classes) == 1 else stacked[:, self.pair_cls == cls, :].sum(axis=1))
            for cls in self.classes
        ]


@dataclass
class _Events:
    """Per (enter, exit, rebalance, stop): entry prices at the last resize and the event thresholds (they do not
    depend on the holding limit). Per perp leg: short (the leg is short), dc (funding cash since the resize)."""

    e: dict[str, np.ndarray]
    dc: dict[str, np.ndarray]
    short: dict[str, np.ndarray]
    k_any: np.ndarray  # the largest 1 / L that an event of either leg fires at
    stop: float


def _events(
    block: Block,
    D: np.ndarray,
    seg: np.ndarray,
    stop: float,
    extremes: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]],
) -> _Events:
    legs = {"a": block.la, "b": block.lb}
    e = {name: gather(lg.mid, seg[None])[0] for name, lg in legs.items()}
    k_any = np.full(block.sig.shape, -np.inf)
    dc, short = {}, {}
    for n, lg in legs.items():
        if not lg.is_perp.any():
            continue
        if (n, stop) not in extremes:
            extremes[(n, stop)] = _adverse_extremes(lg, float(stop))
        short[n] = D[0] > 0 if n == "a" else D[0] < 0  # leg a is short when the pair is long the carry
        dc[n] = lg.cum_cash - gather(lg.cum_cash, seg[None])[0]
        k_leg = _event_threshold(short[n], e[n], dc[n], *extremes[(n, stop)])
        k_leg[~lg.is_perp[:, 0]] = -np.inf  # spot legs are never liquidated
        np.fmax(k_any, k_leg, out=k_any)  # fmax: a NaN on one leg must not hide the other's event
    return _Events(e, dc, short, k_any, float(stop))


@dataclass
class _Group:
    """What the grid points of one group (differing only in leverage) share: the never-stopped path."""

    sidx: np.ndarray  # episode start per cell
    held: np.ndarray  # a position on the never-stopped path
    entries_t: np.ndarray  # entries per bar (a kill never adds or removes one; a drawdown stop ends them)
    xb: np.ndarray  # leg b's units at unit notional (leg a holds -xb), and the bar before's
    xb_p: np.ndarray
    class_sums: list[tuple[int, np.ndarray]]  # the unit rows summed over the pairs of each class
    k_event: np.ndarray  # threshold of the event at t of the position of t-1 (-inf: none possible)
    end_at: np.ndarray  # where a kill started at t would end
    held_t: np.ndarray  # pairs held per bar on the never-stopped path


def _group(sidx: np.ndarray, H: np.ndarray, ev: _Events, rows: _UnitRows) -> _Group:
    P, T = H.shape
    held = H != 0
    entries_t = (held & (shift(H, 0) != H)).sum(axis=0)
    # the never-stopped path at unit notional: leg a holds -H / e_a units, leg b +H / e_a
    q_u = np.divide(1.0, ev.e["a"], out=np.zeros((P, T)), where=held)
    xb = H * q_u
    xb_p = shift(xb, 0.0)
    class_sums = rows.write(xb, xb_p)
    k_event = np.where(held, ev.k_any, -np.inf)  # events need a position (at t-1, after the shift)
    k_event = shift(k_event, -np.inf)  # the position of t-1 is hit at t
    # where a kill started at t would end: the next bar that is flat or starts a new episode (a kill started on
    # such a bar is empty)
    t_idx = np.arange(T, dtype=np.int32)
    brk = ~held | (sidx == t_idx)
    end_at = np.where(brk, t_idx, np.int32(T))
    end_at = np.minimum.accumulate(end_at[:, ::-1], axis=1)[:, ::-1]
    return _Group(sidx, held, entries_t, xb, xb_p, class_sums, k_event, end_at, held.sum(axis=0))


def simulate_grid(
    block: Block, g: dict[str, np.ndarray], halt: np.ndarray | None = None, mark: bool = False
) -> dict[str, Any]:
    """The aggregates of `full_block.simulate_full(detail=False)` for every grid point `g` (fields shaped
    `(G, 1, 1)`), sharing work across the grid (module docstring). halt `(G, 1, 1)`: rule 6's bar per point
    (T: never); mark: also `mark_t` `(G, T)`, rule 6's marked PnL per bar."""
    P, T = block.sig.shape
    G = len(g["enter_apr"])
    halts = np.full(G, T, dtype=np.int64) if halt is None else np.asarray(halt, dtype=np.int64).reshape(G)
    flat = {f: np.asarray(v, dtype=float).reshape(G) for f, v in g.items()}
    # sorted so that groups sharing the direction (enter, exit) and then the resize bars and stop (the event
    # thresholds) are adjacent: those are computed once and reused while the key stays the same
    cols = np.stack([flat[f] for f in ("enter_apr", "exit_apr", "rebalance_h", "stop_distance", "max_hold_h")], axis=1)
    if G == 1:  # np.unique(axis=0) costs ~1 ms a call: noticeable for one backtest in many blocks
        keys, group_of = cols, np.zeros(1, dtype=np.int64)
    else:
        keys, group_of = np.unique(cols, axis=0, return_inverse=True)
    out: dict[str, Any] = {
        "pnl_t": np.zeros((G, T)),
        "parts": {k: np.zeros(G) for k in (*PARTS, "traded_notional")},
        "in_market": np.zeros((G, T), dtype=bool),
        "entries": np.zeros(G, dtype=np.int64),
        "held_pair_bars": np.zeros(G, dtype=np.int64),
        "liquidations": np.zeros(G, dtype=np.int64),
        "stops": np.zeros(G, dtype=np.int64),
    }
    if mark:
        out["mark_t"] = np.zeros((G, T))
    rows = _UnitRows.of(block)
    extremes: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    D_key, D, seg_key = None, None, None
    for k, (enter, exit_, reb_h, stop, max_h) in enumerate(keys):
        col = lambda v: np.array([v], dtype=float).reshape(1, 1, 1)  # noqa: E731
        if D_key != (enter, exit_):  # the direction is shared by every holding limit, rebalance and stop
            D_key, D = (enter, exit_), block.direction(col(enter), col(exit_))
        sidx, H, seg = (a[0] for a in block.episodes(D, col(max_h), col(reb_h)))
        if seg_key != (enter, exit_, reb_h, stop):
            seg_key, ev = (enter, exit_, reb_h, stop), _events(block, D, seg, stop, extremes)
        group = _group(sidx, H, ev, rows)
        for gi in np.flatnonzero(group_of == k):
            _add_point(out, gi, 1.0 / flat["leverage"][gi], block, rows, group, ev, int(halts[gi]))
    return out


def _killed(group: _Group, inv: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At leverage 1 / inv: the cells killed (rule 2 after an event, `(P, T)`) and each episode's first event
    (pair, bar)."""
    P, T = group.k_event.shape
    # the first event of each episode (rule 2): events are sparse, so work on their flat indices
    fe = np.flatnonzero(group.k_event >= inv)
    pe, te = np.divmod(fe, T)
    episode = pe * T + group.sidx.ravel()[fe - 1]  # the position of t-1's episode (te >= 1 for any event)
    first = np.ones(len(episode), dtype=bool)
    first[1:] = episode[1:] != episode[:-1]
    pe, te = pe[first], te[first]
    # killed: from the first event to the end of its episode (disjoint, sorted runs of the flattened array; a
    # run reaching the last bar ends at the next pair's first cell), written as runs: np.repeat of alternating
    # False/True is several times faster than a running sum of +1/-1 marks
    bounds = np.empty(2 * len(pe) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, P * T
    bounds[1:-1:2] = pe * T + te
    bounds[2:-1:2] = pe * T + group.end_at[pe, te]
    runs = np.zeros(2 * len(pe) + 1, dtype=bool)
    runs[1::2] = True
    return np.repeat(runs, np.diff(bounds)).reshape(P, T), pe, te


def _add_point(
    out: dict[str, Any], gi: int, inv: float, block: Block, rows: _UnitRows, group: _Group, ev: _Events, halt: int
) -> None:
    """Grid point gi (leverage 1 / inv) of the group: notional x the unit rows on clean cells, the rest exact.
    From bar `halt` on (rule 6) every held cell is killed too, and events after it do not happen."""
    P, T = group.k_event.shape
    notional = block.notional(inv)
    killed, pe, te = _killed(group, inv)
    if halt < T:
        keep = te <= halt  # the position of halt - 1 still meets its bar
        pe, te = pe[keep], te[keep]
        killed[:, halt:] |= group.held[:, halt:]
    killed_prev = shift(killed, False)
    # unclean cells: killed on either side or at an event (usually a few % of the cells)
    unclean = killed | killed_prev
    at_event = np.zeros(P * T, dtype=bool)
    at_event[pe * T + te] = True
    unclean.ravel()[at_event] = True
    f = np.flatnonzero(unclean)
    p, t = np.divmod(f, T)
    n = notional[p, 0]

    def class_notional(cls: int) -> float:
        return block.capital_per_pair / ((inv if cls & 2 else 1.0) + (inv if cls & 1 else 1.0))

    per_bar = sum(class_notional(cls) * sums for cls, sums in group.class_sums)
    removed = rows.stacked.reshape(len(rows.stacked), -1)[:, f] * n
    for i in range(len(rows.stacked)):
        per_bar[i] -= np.bincount(t, weights=removed[i], minlength=T)
    out["pnl_t"][gi] += per_bar[0]
    if "mark_t" in out:  # rule 6's marked PnL of the clean cells: basis, funding and borrow
        item = dict(zip(rows.names, per_bar[1:], strict=True))
        out["mark_t"][gi] += item["basis"] + item["funding"] - item.get("borrow", 0.0)
    for name, v in zip(rows.names, per_bar[1:].sum(axis=1), strict=True):
        out["parts"][name][gi] += v
    killed_f = killed.ravel()[f]
    killed_t = np.bincount(t[killed_f], minlength=T)
    out["in_market"][gi] |= group.held_t > killed_t
    out["held_pair_bars"][gi] += int(group.held_t.sum() - killed_t.sum())
    out["entries"][gi] += int(group.entries_t[:halt].sum())
    # exact prices where the position differs from notional x the unit path and is not zero
    now, before, event = ~killed.ravel()[f], ~killed_prev.ravel()[f], at_event[f]
    dirty = (now ^ before) | event
    if dirty.any():
        cells = (p[dirty], t[dirty], n[dirty], now[dirty], before[dirty], event[dirty])
        _fix_cells(out, gi, cells, inv, block, group, ev)


def _fix_cells(
    out: dict[str, Any], gi: int, cells: tuple[np.ndarray, ...], inv: float, block: Block, group: _Group, ev: _Events
) -> None:
    """Rules 4-5 on the listed cells (1-D: pair, bar, notional, alive at t and t-1, event at t), added to grid
    point gi's aggregates."""
    p, t, n, now, before, event = cells
    T = out["pnl_t"].shape[1]
    tp = np.maximum(t - 1, 0)  # an event needs an open position at t-1, so t >= 1 wherever it matters
    priced, hit = {}, {}
    for n_, lg, borrow in (("a", block.la, block.borrow_a), ("b", block.lb, block.borrow_b)):
        liq = np.zeros(len(p), dtype=bool)
        stopped = np.zeros(len(p), dtype=bool)
        px = np.full(len(p), np.nan)
        if n_ in ev.dc:
            # the liquidation price of the position of t-1 (accounting.liquidation_price, wallet / size = e / L + F)
            sh, e_p, d = ev.short[n_][p, tp], ev.e[n_][p, tp], ev.dc[n_][p, tp]
            c = lg.mmr[p, 0] + lg.taker[p, 0]
            F = np.where(sh, d, -d)  # funding received per unit since the last resize
            per_unit = e_p * inv + F
            with np.errstate(invalid="ignore", divide="ignore"):
                px = np.where(sh, (e_p + per_unit) / (1.0 + c), (e_p - per_unit) / (1.0 - c))
                # classified with the same rearranged comparisons that found the event (_event_threshold)
                kb = np.where(sh, lg.high[p, t] * (1.0 + c) - e_p - F, e_p - F - lg.low[p, t] * (1.0 - c)) / e_p
                liq = event & lg.is_perp[p, 0] & (kb >= inv)
                if ev.stop > 0:
                    ref = lg.ref[p, t]
                    ks = np.where(
                        sh, ref * (1.0 + ev.stop) * (1.0 + c) - e_p - F, e_p - F - ref * (1.0 - ev.stop) * (1.0 - c)
                    )
                    stopped = event & lg.is_perp[p, 0] & (ks / e_p >= inv)
        sign = -1.0 if n_ == "a" else 1.0  # leg a holds the opposite of leg b
        fee_t, borrow_t = (t if a.shape[1] > 1 else 0 for a in (lg.fee, borrow))  # dated fees, borrow paths
        priced[n_] = leg_costs(
            sign * n * group.xb[p, t] * now, sign * n * group.xb_p[p, t] * before, liq, px, lg.mid[p, t],
            lg.mid_prev[p, t], lg.cash[p, t], lg.fee[p, fee_t], lg.hs[p, t], lg.taker[p, 0], lg.mmr[p, 0],
            borrow[p, borrow_t], block.bar_h,
        )  # fmt: skip
        hit[n_] = (liq, stopped)
    parts = pair_parts(priced["a"], priced["b"])
    pnl = pair_pnl(parts)
    out["pnl_t"][gi] += np.bincount(t, weights=pnl, minlength=T)
    if "mark_t" in out:
        mark = np.broadcast_to(pair_mark(priced["a"], priced["b"], parts), t.shape)
        out["mark_t"][gi] += np.bincount(t, weights=mark, minlength=T)
    for name, v in parts.items():
        out["parts"][name][gi] += float(np.sum(v))
    liq_any = hit["a"][0] | hit["b"][0]
    out["liquidations"][gi] += int(liq_any.sum())
    out["stops"][gi] += int(((hit["a"][1] | hit["b"][1]) & ~liq_any).sum())
