"""The fused simulator `run_backtest` uses: the rules of engine.py for one parameter set, as one compiled loop
over bars and pairs (numba) that books every item and emits the trade and position rows as it goes.

The vectorized full simulator (full_block.py) computes the same thing in ~40 whole-array passes over `(G, P, T)`
blocks, then the tables are found again in those arrays (nonzero, lexsort): at 1 M pair-bars that is memory
traffic, not arithmetic. Here each cell is visited once, bar by bar (pairs inside), reading the panel's own
`(T, M)` rows (no legs gathered or transposed) and writing the `(T, P)` arrays `BacktestResult.arrays` keeps,
the per-bar sums of the equity table, and the trades (already in the table's (ts, pair, leg) order) and
positions as rows. Every item is the same floating-point expression, in the same order, as in full_block.py
and block.py, and the per-bar sums over pairs add in the vectorized engine's order (pairs in blocks of `step`,
then the blocks): the tables are equal to the full simulator's figure for figure (tests/core/backtest/
test_fused.py compares them frame for frame). The run totals (`attribution`) add the per-bar sums: they agree
with the vectorized engine's block-wise totals to the last bits (~1e-15 relative), not exactly.

Compiled once per machine (`cache=True`: numba stores the machine code beside this module, ~10 s the first
time), then each call is the loop alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ..units import HOURS_PER_YEAR
from .block import BLOCK_CELLS, PARTS, bars
from .panel import Panel
from .strategies import PairSet

# per-bar sums the kernel returns, in this order (rows of `sums`)
SUMS = ("pnl", *PARTS, "traded_notional", "gross_exposure", "mark")
_N_SUMS = len(SUMS)
_PNL, _BASIS, _FUNDING, _BORROW, _FEES, _SLIP, _LIQ, _TRADED, _GROSS, _MARK = range(_N_SUMS)
# trade row columns: integers (bar, pair, leg 0/1, REASONS code) and floats (signed qty, price, fee, slippage)
_TI, _TF = 4, 4
# the rows preallocated per cell (a cell trades at most 4 times, 2 per leg, and starts at most one position): a
# run with more is repeated with room for exactly as many
TRADE_ROWS_PER_CELL = 0.5
POSITION_ROWS_PER_CELL = 0.125
# position row columns: integers (pair, entry bar, exit bar or -1, last bar, direction, exit code, size source)
# and floats (units, entry price a, entry price b, pnl, funding, capital unused)
_PI, _PF = 7, 6


@dataclass
class Fused:
    """One run of the fused simulator: what `engine.simulate` returns for grid point 0 (the `(1, ...)` arrays
    the tables and `BacktestResult.arrays` use) and the trade and position rows."""

    sim: dict[str, Any]
    trade_ints: np.ndarray  # (n, 4): bar, pair, leg, reason code, in (ts, pair rank, leg) order
    trade_floats: np.ndarray  # (n, 4): signed qty, price, fee, slippage
    position_ints: np.ndarray  # (n, 7), in the order the positions closed (the table sorts them)
    position_floats: np.ndarray  # (n, 6)


def block_step(T: int) -> int:
    """Pairs per block of the vectorized full simulator at one grid point (engine._run_blocks): the per-bar sums
    add pairs in blocks of this many, then the blocks."""
    return max(1, BLOCK_CELLS // max(T, 1))


def run_fused(panel: Panel, pairs: PairSet, params: Any, halt: int, rank: np.ndarray) -> Fused:
    """The rules of engine.py for `params` (a `BacktestParams`; rule 6's stop bar `halt` given, T: none) on
    every pair: one pass of the compiled loop. `rank`: each pair's position in sorted name order."""
    T, P = pairs.signal.shape
    M = len(panel.markets)
    markets = panel.markets
    taker_exec = params.execution == "taker"
    fee_name = "taker_fee_t" if taker_exec else "maker_fee_t"
    if getattr(panel, fee_name) is not None:
        fee = np.ascontiguousarray(getattr(panel, fee_name), dtype=float)
    else:
        fee = np.array([[m.taker_fee if taker_exec else m.maker_fee for m in markets]], dtype=float).reshape(1, M)
    tier_lo, tier_n, schedules = np.zeros(M, np.int64), np.zeros(M, np.int64), []
    for m in range(M):
        schedule = panel.tiers.get(m)
        if schedule is not None:
            tier_lo[m], tier_n[m] = sum(len(r) for r in schedules), len(schedule)
            schedules.append(np.asarray(schedule, dtype=float))
    tiers = np.concatenate(schedules) if schedules else np.zeros((1, 4))
    step = block_step(T)
    borrow = _per_bar(pairs.borrow_apr, T)
    perp = np.array([m.is_perp for m in markets], dtype=np.bool_)
    has_borrow = np.zeros((2, (P + step - 1) // step), dtype=np.bool_)
    for leg, idx in enumerate((pairs.leg_a, pairs.leg_b)):
        positive = ((borrow > 0) & ~perp[idx][None, :]).any(axis=0)  # block.py charges borrow where any is > 0
        has_borrow[leg] = np.logical_or.reduceat(positive, np.arange(0, P, step)) if P else has_borrow[leg]
    cap = pairs.size_cap if params.sizing == "capacity" and pairs.size_cap is not None else None
    use_cap = params.sizing == "capacity"
    # the per-cell outputs, every cell written by the loop: allocated by numpy (large arrays get transparent huge
    # pages, and freed blocks of this size are reused by the next run instead of faulted in page by page)
    cells_i8 = np.empty((7, T, P), np.int8)  # A, H, D, liq_a, liq_b, stopped, size_src
    cells_f = [np.empty((T, P)) for _ in range(4)]  # q, xa, xb, pnl
    args = (
        np.ascontiguousarray(pairs.signal),
        pairs.leg_a,
        pairs.leg_b,
        np.argsort(rank, kind="stable").astype(np.int64),
        np.ascontiguousarray(panel.mid),
        np.ascontiguousarray(panel.ref),
        np.ascontiguousarray(panel.ref_high),
        np.ascontiguousarray(panel.ref_low),
        np.ascontiguousarray(panel.funding_cash),
        np.ascontiguousarray(panel.half_spread),
        float(params.slippage_bps / 1e4),
        taker_exec,
        fee,
        np.array([m.taker_fee for m in markets], dtype=float),
        np.array([m.mmr for m in markets], dtype=float),
        perp,
        tier_lo,
        tier_n,
        tiers,
        np.asarray(pairs.allow_reverse, dtype=np.bool_),
        _per_bar(pairs.reverse_cost_apr, T),
        borrow,
        has_borrow,
        np.full((1, P), np.nan) if cap is None else np.ascontiguousarray(cap, dtype=float),
        use_cap,
        float(params.capital / P),
        float(panel.bar_h),
        float(params.units),
        float(params.enter_apr),
        float(params.exit_apr),
        int(bars(np.array(float(params.max_hold_h)), panel.bar_h)),
        int(bars(np.array(float(params.rebalance_h)), panel.bar_h)),
        float(params.leverage),
        float(params.stop_distance),
        int(halt),
        int(step),
        cells_i8,
        *cells_f,
    )
    # trade and position rows, preallocated (arrays the loop never reassigns cost no reference counts): a share of
    # the cells; a run with more rows than that is run again with room for exactly as many
    n_trades, n_positions = int(TRADE_ROWS_PER_CELL * T * P) + 16, int(POSITION_ROWS_PER_CELL * T * P) + 16
    for _ in range(2):
        rows = (np.empty((n_trades, _TI), np.int64), np.empty((n_trades, _TF)),
                np.empty((n_positions, _PI), np.int64), np.empty((n_positions, _PF)))  # fmt: skip
        (unused, last, sums, in_market, counts, n_t, n_p) = _kernel(*args, *rows)
        if n_t <= n_trades and n_p <= n_positions:
            break
        n_trades, n_positions = max(n_t, n_trades), max(n_p, n_positions)
    ti, tf, pi, pf = rows[0][:n_t], rows[1][:n_t], rows[2][:n_p], rows[3][:n_p]
    sim: dict[str, Any] = {}
    for k, name in enumerate(("A", "H", "D", "liq_a", "liq_b", "stopped", "size_src")):
        sim[name] = cells_i8[k][None].view(bool) if name in ("liq_a", "liq_b", "stopped") else cells_i8[k][None]
    for name, values in zip(("q", "xa", "xb", "pnl"), cells_f, strict=True):
        sim[name] = values[None]
    # the open book's entry prices and resize bars: the last bar's only, `(1, 1, P)`
    sim["e_a"], sim["e_b"], sim["seg"] = last[0][None, None], last[1][None, None], last[2].astype(np.int64)[None, None]
    if use_cap:
        sim["unused"] = unused[None]
    else:
        del sim["size_src"]
    pnl_t = sums[_PNL][None]
    sim.update(
        {
            "pnl_t": pnl_t,
            "parts_t": {k: sums[SUMS.index(k)][None] for k in (*PARTS, "traded_notional")},
            "mark_t": sums[_MARK][None],
            "in_market": in_market[None],
            "gross_exposure": sums[_GROSS][None],
            "entries": counts[0:1],
            "held_pair_bars": counts[1:2],
            "liquidations": counts[2:3],
            "stops": counts[3:4],
            "halt": np.array([halt], dtype=np.int64),
        }
    )
    return Fused(sim, ti, tf, pi, pf)


def _per_bar(values: np.ndarray, T: int) -> np.ndarray:
    """A `(P,)` or `(T, P)` per-pair array as `(1, P)` or `(T, P)` float rows (the kernel reads row t or 0)."""
    a = np.asarray(values, dtype=float)
    return np.ascontiguousarray(a.reshape(1, -1) if a.ndim == 1 else a)


# -- the compiled loop ---------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", inline="always")
def _nan_to_num(x: float) -> float:
    """np.nan_to_num of one value: NaN -> 0, +-inf -> the largest finite float of that sign."""
    if np.isnan(x):
        return 0.0
    if np.isinf(x):
        return 1.7976931348623157e308 if x > 0 else -1.7976931348623157e308
    return x


@numba.njit(cache=True, error_model="numpy")
def _tiered(e: float, per_unit: float, size: float, short: bool, tiers: np.ndarray, lo: int, n: int,
            fee: float) -> tuple[float, float]:  # fmt: skip
    """full_block.tiered_liquidation for one cell: the price and the maintenance rate forfeited there."""
    k_in = -1
    last_notional = 0.0
    for k in range(n):
        row = lo + k
        add = tiers[row, 3] / size if size > 0 else 0.0
        c = tiers[row, 2] + fee
        price = (e + per_unit + add) / (1.0 + c) if short else (e - per_unit - add) / (1.0 - c)
        notional = size * price
        if k_in < 0 and notional > tiers[row, 0] and notional <= tiers[row, 1]:
            k_in = k
        last_notional = notional
    if k_in < 0:
        k_in = n - 1 if last_notional > tiers[lo + n - 1, 1] else 0
    row = lo + k_in
    add = tiers[row, 3] / size if size > 0 else 0.0
    c = tiers[row, 2] + fee
    price = (e + per_unit + add) / (1.0 + c) if short else (e - per_unit - add) / (1.0 - c)
    held = size * price
    rate = tiers[row, 2] - (tiers[row, 3] / held if held > 0 else 0.0)
    return price, rate


@numba.njit(cache=True, error_model="numpy")
def _leg_check(xp: float, lpx: float, high: float, low: float, ref: float, stop: float) -> tuple[bool, bool]:
    """Rule 5's checks at a bar for a perp leg that held `xp` at the bar before, whose liquidation price was `lpx`:
    breached by the bar's reference high (short) or low (long), or within `stop` of it (the risk stop)."""
    short, long = xp < 0, xp > 0
    breach = (short and high >= lpx) or (long and low <= lpx)
    stopped = False
    if stop > 0:
        dist = (lpx - ref) * (2.0 * short - 1.0) / ref
        stopped = (short or long) and dist <= stop and not breach
    return breach, stopped


@numba.njit(cache=True, error_model="numpy")
def _flat_liquidation(e: float, per_unit: float, mmr: float, taker: float, short: bool) -> float:
    """accounting.liquidation_price as full_block._leg_events inlines it (the long's price plus the difference)."""
    liq_long = (e - per_unit) / (1.0 - mmr - taker)
    return liq_long + ((e + per_unit) / (1.0 + mmr + taker) - liq_long) * (1.0 if short else 0.0)


@numba.njit(cache=True, error_model="numpy")
def _leg_costs(x: float, xp: float, liq: bool, liq_px: float, mid: float, mid_prev: float, cash: float, fee: float,
               hs: float, taker: float, mmr: float, charged: bool, borrow: float,
               bar_h: float) -> tuple[float, float, float, float, float, float, float, float]:  # fmt: skip
    """block.leg_costs for one cell: basis, funding, borrow, fees, slippage, liquidation, the liquidation fee
    (within fees) and the traded notional. `charged`: the block charges borrow (any rate > 0 in it)."""
    end_px = liq_px if liq else mid
    basis = xp * (end_px - mid_prev)
    funding = 0.0 if liq else -xp * cash
    borrowed = 0.0
    if charged:
        short = -xp
        borrowed = (short if (short > 0.0 or np.isnan(short)) else 0.0) * mid_prev * (borrow * bar_h / HOURS_PER_YEAR)
    traded = abs(x) if liq else abs(x - xp)
    at_mid = traded * mid
    liq_notional = abs(xp) * _nan_to_num(liq_px) if liq else 0.0
    fees = at_mid * fee + liq_notional * taker
    return basis, funding, borrowed, fees, at_mid * hs, liq_notional * mmr, liq_notional * taker, at_mid + liq_notional


@numba.njit(cache=True, error_model="numpy")
def _position_row(pi: np.ndarray, pf: np.ndarray, n: int, p: int, t1: int, last: int, direction: int, why: int,
                  ep_int: np.ndarray, ep_f: np.ndarray, cs: float, cf: float) -> None:  # fmt: skip
    """Row n of the position rows: pair p's open episode (ep_int, ep_f), closed at t1 (-1: still open); nothing
    past the rows' end (the run is repeated with room for every row)."""
    if n >= pi.shape[0]:
        return
    pi[n, 0], pi[n, 1], pi[n, 2], pi[n, 3] = p, ep_int[p, 0], t1, last
    pi[n, 4], pi[n, 5], pi[n, 6] = direction, why, ep_int[p, 1]
    pf[n, 0], pf[n, 1], pf[n, 2] = ep_f[p, 0], ep_f[p, 1], ep_f[p, 2]
    pf[n, 3], pf[n, 4], pf[n, 5] = cs - ep_f[p, 3], cf - ep_f[p, 4], ep_f[p, 5]


@numba.njit(cache=True, error_model="numpy")
def _kernel(
    sig: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    by_rank: np.ndarray,
    mid_raw: np.ndarray,
    ref: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    cash: np.ndarray,
    hs_raw: np.ndarray,
    slip_model: float,
    taker_exec: bool,
    fee_m: np.ndarray,
    taker_m: np.ndarray,
    mmr_m: np.ndarray,
    perp_m: np.ndarray,
    tier_lo: np.ndarray,
    tier_n: np.ndarray,
    tiers: np.ndarray,
    allow_rev: np.ndarray,
    rcost: np.ndarray,
    borrow: np.ndarray,
    has_borrow: np.ndarray,
    cap: np.ndarray,
    use_cap: bool,
    cpp: float,
    bar_h: float,
    units: float,
    enter: float,
    exit_: float,
    max_bars: int,
    reb_bars: int,
    lev: float,
    stop: float,
    halt: int,
    step: int,
    cells_i8: np.ndarray,
    q_out: np.ndarray,
    xa_out: np.ndarray,
    xb_out: np.ndarray,
    pnl_out: np.ndarray,
    ti: np.ndarray,
    tf: np.ndarray,
    pi: np.ndarray,
    pf: np.ndarray,
) -> tuple:
    """The loop (see the module's docstring); arrays as `run_fused` lays them out, outputs written in place."""
    T, P = sig.shape
    sums = np.zeros((_N_SUMS, T))
    unused = np.empty((T if use_cap else 0, P))  # sizing by capacity: the capital each cell's sizing left unused
    in_market = np.zeros(T, np.bool_)
    counts = np.zeros(4, np.int64)  # entries, held pair-bars, liquidations, stops
    n_t = 0
    n_p = 0
    legs = np.empty((2, P), np.int64)  # each pair's market per leg
    legs[0], legs[1] = ia, ib
    # per-pair state (per leg: `(2, P)`)
    pos = np.zeros(P, np.bool_)
    neg = np.zeros(P, np.bool_)
    d_prev = np.zeros(P, np.int64)
    sidx = np.full(P, -1, np.int64)
    h_prev = np.zeros(P, np.int64)
    a_prev = np.zeros(P, np.int64)
    seg_prev = np.full(P, -1, np.int64)
    age_mod = np.zeros(P, np.int64)  # age % reb: 0 at bar -1 (age 0 before the first episode)
    killed_ep = np.full(P, -1, np.int64)
    entry = np.zeros((2, P))  # mid at the last resize
    cum = np.zeros((2, P))  # the never-stopped path's funding since bar 0 (full_block._leg_events' cum)
    cum_seg = np.zeros((2, P))  # that sum at the last resize
    liq_next = np.full((2, P), np.nan)  # the liquidation price (and rate) the next bar is checked against
    mmr_next = np.zeros((2, P))
    xh_prev = np.zeros((2, P))  # units on the never-stopped path, and held, at the bar before
    x_prev = np.zeros((2, P))
    cs = np.zeros(P)  # running sums of the pair's PnL and funding (records.positions' cumsums)
    cf = np.zeros(P)
    ep_int = np.zeros((P, 2), np.int64)  # the open episode: entry bar, size source
    ep_f = np.zeros((P, 6))  # and units, entry prices, PnL and funding sums before it, capital unused
    # this bar's per-pair values: per leg (liquidated, liquidation price, forfeited rate, fee, half-spread, x)
    brk = np.zeros(2, np.bool_)
    stp = np.zeros(2, np.bool_)
    lpx = np.zeros(2)
    mmr_used = np.zeros(2)
    lfee = np.zeros(2)
    bar_liq = np.zeros((2, P), np.bool_)
    bar_px = np.zeros((2, P))
    bar_fee = np.zeros((2, P))
    bar_hs = np.zeros((2, P))
    bar_x = np.zeros((2, P))
    bar_code = np.zeros(P, np.int64)
    bar_trades = np.zeros(P, np.bool_)
    vals = np.zeros(_N_SUMS)  # the cell's items in SUMS order
    blk = np.zeros(_N_SUMS)  # the current block's sums
    dated_fee = fee_m.shape[0] > 1
    dated_rc = rcost.shape[0] > 1
    dated_borrow = borrow.shape[0] > 1
    dated_cap = cap.shape[0] > 1
    inv_lev = 1.0 / lev
    reb = max(reb_bars, 1)
    for t in range(T):
        tf_ = t if dated_fee else 0
        tr = t if dated_rc else 0
        tb = t if dated_borrow else 0
        for p in range(P):
            # 1. desired direction with hysteresis
            s = sig[t, p]
            rc = rcost[tr, p]
            nan = not np.isfinite(s)
            if s >= enter:
                pos[p] = True
            elif (s <= exit_) or nan:
                pos[p] = False
            if allow_rev[p] and s <= -(enter + rc):
                neg[p] = True
            elif (s >= -(exit_ + rc)) or nan:
                neg[p] = False
            D = np.int64(pos[p]) - np.int64(neg[p])
            # 2. episodes, holding limit, rebalance segments
            sidx_prev = sidx[p]
            if D != 0 and d_prev[p] != D:
                sidx[p] = t
            age = t - sidx[p]
            H = D if (max_bars <= 0 or age < max_bars) else 0
            # seg = sidx + (age // reb) * reb_bars, clipped at 0: age modulo reb kept by counting (no division)
            if sidx[p] == t:
                age_mod[p] = 0
            else:
                age_mod[p] = age_mod[p] + 1 if age_mod[p] + 1 < reb else 0
            seg = t - age_mod[p] if reb_bars > 0 else sidx[p]
            if seg < 0:
                seg = 0
            seg_changed = seg != seg_prev[p]
            # 3. sizing
            cost_a = inv_lev if perp_m[ia[p]] else 1.0
            cost_b = inv_lev if perp_m[ib[p]] else 1.0
            even = cpp / (cost_a + cost_b)
            notional = even
            src = 0
            if use_cap:
                c = cap[max(sidx[p], 0) if dated_cap else 0, p]
                src = 0 if np.isnan(c) else (2 if c < even else 1)
                notional = even if np.isnan(c) else (c if np.isnan(even) else min(even, c))
                if not notional > 0:
                    H = 0
            if seg_changed:  # mid at the resize (NaN as 0, as block.legs_of)
                for leg in range(2):
                    entry[leg, p] = _nan_to_num(mid_raw[seg, legs[leg, p]])
            held = H != 0
            q = 0.0
            if held:  # a fixed size, or the notional's worth at the resize
                q = units if units > 0 else notional / entry[0, p]
            # 5. liquidation and stop events on the never-stopped path (full_block._leg_events)
            for leg in range(2):
                m = legs[leg, p]
                xh = np.float64(-H if leg == 0 else H) * q
                brk[leg], stp[leg], lpx[leg], mmr_used[leg] = False, False, np.nan, mmr_m[m]
                if perp_m[m]:
                    xp = xh_prev[leg, p]
                    if xp != 0:  # held at t-1 (else nothing can happen, and the cumsum's increment is a zero)
                        cum[leg, p] += -xp * cash[t, m]
                        lpx[leg], mmr_used[leg] = liq_next[leg, p], mmr_next[leg, p]
                        brk[leg], stp[leg] = _leg_check(xp, lpx[leg], high[t, m], low[t, m], ref[t, m], stop)
                    if seg_changed:
                        cum_seg[leg, p] = cum[leg, p]
                    if xh != 0:  # held at t: the price the next bar is checked against
                        size = abs(xh)
                        wallet = size * entry[leg, p] / lev + cum[leg, p] - cum_seg[leg, p]
                        per_unit = wallet / size if size > 0 else 0.0
                        if tier_n[m] > 0:
                            liq_next[leg, p], mmr_next[leg, p] = _tiered(entry[leg, p], per_unit, size, xh < 0, tiers,
                                                                         tier_lo[m], tier_n[m], taker_m[m])  # fmt: skip
                        else:
                            liq_next[leg, p] = _flat_liquidation(entry[leg, p], per_unit, mmr_m[m], taker_m[m], xh < 0)
                            mmr_next[leg, p] = mmr_m[m]
                xh_prev[leg, p] = xh
            # rule 2 after an event: flat from an episode's first liquidation or stop to its end
            if (brk[0] or brk[1] or stp[0] or stp[1]) and h_prev[p] != 0:
                killed_ep[p] = max(killed_ep[p], sidx_prev)
            A = 0 if (held and killed_ep[p] == sidx[p]) else H
            if t >= halt:
                A = 0
            ap = a_prev[p]
            liq_a = brk[0] and ap != 0
            liq_b = brk[1] and ap != 0
            stopped = (stp[0] or stp[1]) and ap != 0 and not (liq_a or liq_b)
            # 4. accounting (block.leg_costs per leg, block.pair_parts adding leg a's item and leg b's)
            for leg in range(2):
                m = legs[leg, p]
                x = np.float64(-A if leg == 0 else A) * q
                liq = liq_a if leg == 0 else liq_b
                fee = fee_m[tf_, m]
                hs = 0.0
                if taker_exec:
                    hs = hs_raw[t, m] if np.isfinite(hs_raw[t, m]) else slip_model
                charged = has_borrow[leg, p // step]
                rate = 0.0 if perp_m[m] else borrow[tb, p]
                mid = _nan_to_num(mid_raw[t, m])
                mid_prev = _nan_to_num(mid_raw[t - 1, m]) if t > 0 else mid
                items = _leg_costs(x, x_prev[leg, p], liq, lpx[leg], mid, mid_prev, cash[t, m], fee, hs, taker_m[m],
                                   mmr_used[leg], charged, rate, bar_h)  # fmt: skip
                gross = abs(x) * mid
                if leg == 0:
                    for k in range(6):
                        vals[1 + k] = items[k]
                    vals[_TRADED], vals[_GROSS] = items[7], gross
                else:
                    for k in range(6):
                        vals[1 + k] += items[k]
                    vals[_TRADED] += items[7]
                    vals[_GROSS] += gross
                lfee[leg] = items[6]
                bar_liq[leg, p], bar_px[leg, p], bar_fee[leg, p], bar_hs[leg, p], bar_x[leg, p] = (
                    liq,
                    lpx[leg],
                    fee,
                    hs,
                    x,
                )
            basis, fund, borr, fees, slip, liqc = vals[1], vals[2], vals[3], vals[4], vals[5], vals[6]
            pnl = basis + fund - borr - fees - slip - liqc
            vals[_PNL] = pnl
            vals[_MARK] = basis + fund - borr - liqc - lfee[0] - lfee[1]
            # per-bar sums in the vectorized engine's order: pairs within a block, then blocks
            for k in range(_N_SUMS):
                blk[k] = vals[k] if p % step == 0 else blk[k] + vals[k]
            if p % step == step - 1 or p == P - 1:
                for k in range(_N_SUMS):
                    sums[k, t] = blk[k] if p < step else sums[k, t] + blk[k]
            # counters
            if A != 0:
                in_market[t] = True
                counts[1] += 1
                if ap != A:
                    counts[0] += 1
            if liq_a or liq_b:
                counts[2] += 1
            if stopped:
                counts[3] += 1
            # why the position changed (records._reason_codes)
            if liq_a or liq_b:
                code = 6
            elif stopped:
                code = 5
            elif ap != 0 and A == 0 and t == halt:
                code = 7
            elif ap != 0 and A == 0 and D != 0 and H == 0:
                code = 4
            elif ap != 0 and A == 0 and D == 0:
                code = 3
            elif ap == 0 and A != 0:
                code = 2
            elif ap != 0 and A != 0 and ap != A:
                code = 1
            else:
                code = 0
            bar_code[p] = code
            bar_trades[p] = liq_a or liq_b or bar_x[0, p] != x_prev[0, p] or bar_x[1, p] != x_prev[1, p]
            # positions (records.positions): a run of constant non-zero A
            cs_before = cs[p]
            cf_before = cf[p]
            cs[p] = pnl if t == 0 else cs[p] + pnl
            cf[p] = fund if t == 0 else cf[p] + fund
            if ap != 0 and ap != A:
                if A != 0:
                    why = 1
                elif liq_a or liq_b:
                    why = 2
                elif stopped:
                    why = 3
                elif t == halt:
                    why = 4
                elif D != 0:
                    why = 5
                else:
                    why = 6
                _position_row(pi, pf, n_p, p, t, t, ap, why, ep_int, ep_f, cs[p], cf[p])
                n_p += 1
            if A != 0 and ap != A:
                ep_int[p, 0], ep_int[p, 1] = t, src
                ep_f[p, 0], ep_f[p, 1], ep_f[p, 2] = q, entry[0, p], entry[1, p]
                ep_f[p, 3] = cs_before if t > 0 else 0.0
                ep_f[p, 4] = cf_before if t > 0 else 0.0
                ep_f[p, 5] = cpp * (1.0 - notional / even) if use_cap else 0.0
            # the per-cell arrays
            cells_i8[0, t, p] = A
            cells_i8[1, t, p] = H
            cells_i8[2, t, p] = D
            cells_i8[3, t, p] = liq_a
            cells_i8[4, t, p] = liq_b
            cells_i8[5, t, p] = stopped
            cells_i8[6, t, p] = src
            q_out[t, p] = q
            xa_out[t, p] = bar_x[0, p]
            xb_out[t, p] = bar_x[1, p]
            pnl_out[t, p] = pnl
            if use_cap:
                unused[t, p] = cpp * (1.0 - notional / even)
            # state for the next bar
            d_prev[p] = D
            h_prev[p] = H
            a_prev[p] = A
            seg_prev[p] = seg
        # this bar's trades, in (pair rank, leg) order: a liquidation close, then any other change of the leg
        for r in range(P):
            p = by_rank[r]
            if not bar_trades[p]:
                continue
            for leg in range(2):
                x, xp, m = bar_x[leg, p], x_prev[leg, p], legs[leg, p]
                if bar_liq[leg, p]:
                    px = bar_px[leg, p]
                    if n_t < ti.shape[0]:  # else counted only: the run is repeated with room for every row
                        ti[n_t, 0], ti[n_t, 1], ti[n_t, 2], ti[n_t, 3] = t, p, leg, 6
                        tf[n_t, 0], tf[n_t, 1], tf[n_t, 2], tf[n_t, 3] = -xp, px, abs(-xp) * px * taker_m[m], 0.0
                    n_t += 1
                dq = x if bar_liq[leg, p] else x - xp
                if dq != 0:
                    px = mid_raw[t, m]
                    traded_usd = abs(dq) * px
                    if n_t < ti.shape[0]:
                        ti[n_t, 0], ti[n_t, 1], ti[n_t, 2] = t, p, leg
                        ti[n_t, 3] = 2 if bar_liq[leg, p] else bar_code[p]
                        tf[n_t, 0], tf[n_t, 1] = dq, px
                        tf[n_t, 2], tf[n_t, 3] = traded_usd * bar_fee[leg, p], traded_usd * bar_hs[leg, p]
                    n_t += 1
        x_prev[:, :] = bar_x
    # positions still open after the last bar
    for p in range(P):
        if a_prev[p] != 0:
            _position_row(pi, pf, n_p, p, -1, T - 1, a_prev[p], 0, ep_int, ep_f, cs[p], cf[p])
            n_p += 1
    last = np.empty((3, P))  # the last bar's entry prices and resize bar (the open book's)
    last[0], last[1], last[2] = entry[0], entry[1], seg_prev
    return unused, last, sums, in_market, counts, n_t, n_p
