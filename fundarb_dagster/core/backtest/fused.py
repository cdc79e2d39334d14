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
    # trade and position rows at their upper bounds (a liquidation close and a change per leg and cell; a position
    # per cell): only the pages written are touched, and arrays the loop never reassigns cost no reference counts
    rows = [np.empty((4 * T * P, _TI), np.int64), np.empty((4 * T * P, _TF)), np.empty((T * P, _PI), np.int64),
            np.empty((T * P, _PF))]  # fmt: skip
    out = _kernel(
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
        *rows,
    )
    (unused, last, sums, in_market, counts, ti, tf, pi, pf) = out
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
    # per-pair state
    pos = np.zeros(P, np.bool_)
    neg = np.zeros(P, np.bool_)
    d_prev = np.zeros(P, np.int64)
    sidx = np.full(P, -1, np.int64)
    h_prev = np.zeros(P, np.int64)
    a_prev = np.zeros(P, np.int64)
    seg_prev = np.full(P, -1, np.int64)
    e_a = np.zeros(P)
    e_b = np.zeros(P)
    cum_a = np.zeros(P)  # the never-stopped path's funding since bar 0 (full_block._leg_events' cum)
    cum_b = np.zeros(P)
    cum_a_seg = np.zeros(P)
    cum_b_seg = np.zeros(P)
    liq_prev_a = np.full(P, np.nan)
    liq_prev_b = np.full(P, np.nan)
    mmr_prev_a = np.zeros(P)
    mmr_prev_b = np.zeros(P)
    xh_prev_a = np.zeros(P)
    xh_prev_b = np.zeros(P)
    killed_ep = np.full(P, -1, np.int64)
    xa_prev = np.zeros(P)
    xb_prev = np.zeros(P)
    cs = np.zeros(P)  # running sums of the pair's PnL and funding (records.positions' cumsums)
    cf = np.zeros(P)
    ep_t0 = np.zeros(P, np.int64)
    ep_cs = np.zeros(P)
    ep_cf = np.zeros(P)
    ep_q = np.zeros(P)  # units, entry prices, size source and capital unused at the episode's entry
    ep_ea = np.zeros(P)
    ep_eb = np.zeros(P)
    ep_src = np.zeros(P, np.int64)
    ep_unused = np.zeros(P)
    liq_px = np.zeros((2, P))  # this bar's liquidation price per leg (the close's price)
    # this bar's trade inputs per pair (emitted in rank order once every pair is done)
    bar_code = np.zeros(P, np.int64)
    bar_fee = np.zeros((2, P))
    bar_hs = np.zeros((2, P))
    blk = np.zeros(_N_SUMS)
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
            ma, mb = ia[p], ib[p]
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
            seg = sidx[p] + (age // reb) * reb_bars
            if seg < 0:
                seg = 0
            # 3. sizing
            cost_a = inv_lev if perp_m[ma] else 1.0
            cost_b = inv_lev if perp_m[mb] else 1.0
            even = cpp / (cost_a + cost_b)
            notional = even
            src = 0
            if use_cap:
                c = cap[max(sidx[p], 0) if dated_cap else 0, p]
                if np.isnan(c):
                    src = 0
                elif c < even:
                    src = 2
                else:
                    src = 1
                notional = even if np.isnan(c) else (c if np.isnan(even) else min(even, c))
                if not notional > 0:
                    H = 0
            # legs' prices this bar (mid: NaN as 0, as block.legs_of)
            mid_a = _nan_to_num(mid_raw[t, ma])
            mid_b = _nan_to_num(mid_raw[t, mb])
            mp_a = _nan_to_num(mid_raw[t - 1, ma]) if t > 0 else mid_a
            mp_b = _nan_to_num(mid_raw[t - 1, mb]) if t > 0 else mid_b
            if seg != seg_prev[p]:
                e_a[p] = _nan_to_num(mid_raw[seg, ma])
                e_b[p] = _nan_to_num(mid_raw[seg, mb])
            held = H != 0
            size_q = units if units > 0 else notional / e_a[p]  # a fixed size, or the notional's worth at entry
            q = size_q if held else 0.0
            # 5. liquidation and stop events on the never-stopped path
            xh_a = np.float64(-H) * q
            xh_b = np.float64(H) * q
            brk_a = False
            stp_a = False
            lpx_a = np.nan
            mmr_a = mmr_m[ma]
            if perp_m[ma]:
                v = -xh_prev_a[p] * cash[t, ma]
                cum_a[p] = v if t == 0 else cum_a[p] + v
                if seg != seg_prev[p]:
                    cum_a_seg[p] = cum_a[p]
                size = abs(xh_a)
                wallet = size * e_a[p] / lev + cum_a[p] - cum_a_seg[p]
                per_unit = wallet / size if size > 0 else 0.0
                if tier_n[ma] > 0:
                    liq, mmr_now = _tiered(e_a[p], per_unit, size, xh_a < 0, tiers, tier_lo[ma], tier_n[ma],
                                           taker_m[ma])  # fmt: skip
                else:
                    liq_long = (e_a[p] - per_unit) / (1.0 - mmr_m[ma] - taker_m[ma])
                    liq = liq_long + ((e_a[p] + per_unit) / (1.0 + mmr_m[ma] + taker_m[ma]) - liq_long) * (
                        1.0 if xh_a < 0 else 0.0
                    )
                    mmr_now = mmr_m[ma]
                lpx_a = liq_prev_a[p] if t > 0 else np.nan
                mmr_a = mmr_prev_a[p] if t > 0 else 0.0
                short, long = xh_prev_a[p] < 0, xh_prev_a[p] > 0
                brk_a = (short and high[t, ma] >= lpx_a) or (long and low[t, ma] <= lpx_a)
                if stop > 0:
                    dist = (lpx_a - ref[t, ma]) * (2.0 * short - 1.0) / ref[t, ma]
                    stp_a = (short or long) and dist <= stop and not brk_a
                liq_prev_a[p] = liq
                mmr_prev_a[p] = mmr_now
            brk_b = False
            stp_b = False
            lpx_b = np.nan
            mmr_b = mmr_m[mb]
            if perp_m[mb]:
                v = -xh_prev_b[p] * cash[t, mb]
                cum_b[p] = v if t == 0 else cum_b[p] + v
                if seg != seg_prev[p]:
                    cum_b_seg[p] = cum_b[p]
                size = abs(xh_b)
                wallet = size * e_b[p] / lev + cum_b[p] - cum_b_seg[p]
                per_unit = wallet / size if size > 0 else 0.0
                if tier_n[mb] > 0:
                    liq, mmr_now = _tiered(e_b[p], per_unit, size, xh_b < 0, tiers, tier_lo[mb], tier_n[mb],
                                           taker_m[mb])  # fmt: skip
                else:
                    liq_long = (e_b[p] - per_unit) / (1.0 - mmr_m[mb] - taker_m[mb])
                    liq = liq_long + ((e_b[p] + per_unit) / (1.0 + mmr_m[mb] + taker_m[mb]) - liq_long) * (
                        1.0 if xh_b < 0 else 0.0
                    )
                    mmr_now = mmr_m[mb]
                lpx_b = liq_prev_b[p] if t > 0 else np.nan
                mmr_b = mmr_prev_b[p] if t > 0 else 0.0
                short, long = xh_prev_b[p] < 0, xh_prev_b[p] > 0
                brk_b = (short and high[t, mb] >= lpx_b) or (long and low[t, mb] <= lpx_b)
                if stop > 0:
                    dist = (lpx_b - ref[t, mb]) * (2.0 * short - 1.0) / ref[t, mb]
                    stp_b = (short or long) and dist <= stop and not brk_b
                liq_prev_b[p] = liq
                mmr_prev_b[p] = mmr_now
            # rule 2 after an event: flat from an episode's first liquidation or stop to its end
            if (brk_a or brk_b or stp_a or stp_b) and h_prev[p] != 0:
                killed_ep[p] = max(killed_ep[p], sidx_prev)
            A = 0 if (held and killed_ep[p] == sidx[p]) else H
            if t >= halt:
                A = 0
            open_prev = a_prev[p] != 0
            liq_a = brk_a and open_prev
            liq_b = brk_b and open_prev
            stopped = (stp_a or stp_b) and open_prev and not (liq_a or liq_b)
            # 4. accounting
            xa = np.float64(-A) * q
            xb = np.float64(A) * q
            fa = fee_m[tf_, ma]
            fb = fee_m[tf_, mb]
            if taker_exec:
                ha = hs_raw[t, ma]
                ha = ha if np.isfinite(ha) else slip_model
                hb = hs_raw[t, mb]
                hb = hb if np.isfinite(hb) else slip_model
            else:
                ha = 0.0
                hb = 0.0
            ba = 0.0 if perp_m[ma] else borrow[tb, p]
            bb = 0.0 if perp_m[mb] else borrow[tb, p]
            blk_i = p // step
            xp = xa_prev[p]
            end_px = lpx_a if liq_a else mid_a
            basis_a = xp * (end_px - mp_a)
            fund_a = 0.0 if liq_a else -xp * cash[t, ma]
            borrow_a = 0.0
            if has_borrow[0, blk_i]:
                nx = -xp
                borrow_a = (nx if (nx > 0.0 or np.isnan(nx)) else 0.0) * mp_a * (ba * bar_h / HOURS_PER_YEAR)
            traded = abs(xa) if liq_a else abs(xa - xp)
            at_mid = traded * mid_a
            liq_n = abs(xp) * _nan_to_num(lpx_a) if liq_a else 0.0
            fees_a = at_mid * fa + liq_n * taker_m[ma]
            slip_a = at_mid * ha
            liqc_a = liq_n * mmr_a
            lfee_a = liq_n * taker_m[ma]
            tn_a = at_mid + liq_n
            xp = xb_prev[p]
            end_px = lpx_b if liq_b else mid_b
            basis_b = xp * (end_px - mp_b)
            fund_b = 0.0 if liq_b else -xp * cash[t, mb]
            borrow_b = 0.0
            if has_borrow[1, blk_i]:
                nx = -xp
                borrow_b = (nx if (nx > 0.0 or np.isnan(nx)) else 0.0) * mp_b * (bb * bar_h / HOURS_PER_YEAR)
            traded = abs(xb) if liq_b else abs(xb - xp)
            at_mid = traded * mid_b
            liq_n = abs(xp) * _nan_to_num(lpx_b) if liq_b else 0.0
            fees_b = at_mid * fb + liq_n * taker_m[mb]
            slip_b = at_mid * hb
            liqc_b = liq_n * mmr_b
            lfee_b = liq_n * taker_m[mb]
            tn_b = at_mid + liq_n
            basis = basis_a + basis_b
            fund = fund_a + fund_b
            borr = borrow_a + borrow_b
            fees = fees_a + fees_b
            slip = slip_a + slip_b
            liqc = liqc_a + liqc_b
            pnl = basis + fund - borr - fees - slip - liqc
            mark = basis + fund - borr - liqc - lfee_a - lfee_b
            gross = abs(xa) * mid_a + abs(xb) * mid_b
            # per-bar sums in the vectorized engine's order: pairs within a block, then blocks
            vals = (pnl, basis, fund, borr, fees, slip, liqc, tn_a + tn_b, gross, mark)
            first_in_blk = p % step == 0
            for k in range(_N_SUMS):
                blk[k] = vals[k] if first_in_blk else blk[k] + vals[k]
            if p % step == step - 1 or p == P - 1:
                for k in range(_N_SUMS):
                    sums[k, t] = blk[k] if p < step else sums[k, t] + blk[k]
            # counters
            if A != 0:
                in_market[t] = True
                counts[1] += 1
                if a_prev[p] != A:
                    counts[0] += 1
            if liq_a or liq_b:
                counts[2] += 1
            if stopped:
                counts[3] += 1
            # why the position changed (records._reason_codes)
            ap = a_prev[p]
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
            bar_fee[0, p] = fa
            bar_fee[1, p] = fb
            bar_hs[0, p] = ha
            bar_hs[1, p] = hb
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
                t0 = ep_t0[p]
                pi[n_p, 0], pi[n_p, 1], pi[n_p, 2], pi[n_p, 3] = p, t0, t, t
                pi[n_p, 4], pi[n_p, 5] = ap, why
                pi[n_p, 6] = ep_src[p]
                pf[n_p, 0], pf[n_p, 1], pf[n_p, 2] = ep_q[p], ep_ea[p], ep_eb[p]
                pf[n_p, 3] = cs[p] - ep_cs[p]
                pf[n_p, 4] = cf[p] - ep_cf[p]
                pf[n_p, 5] = ep_unused[p]
                n_p += 1
            if A != 0 and ap != A:
                ep_t0[p] = t
                ep_q[p], ep_ea[p], ep_eb[p], ep_src[p] = q, e_a[p], e_b[p], src
                ep_unused[p] = cpp * (1.0 - notional / even) if use_cap else 0.0
                ep_cs[p] = cs_before if t > 0 else 0.0
                ep_cf[p] = cf_before if t > 0 else 0.0
            # the per-cell arrays
            cells_i8[0, t, p] = A
            cells_i8[1, t, p] = H
            cells_i8[2, t, p] = D
            cells_i8[3, t, p] = liq_a
            cells_i8[4, t, p] = liq_b
            cells_i8[5, t, p] = stopped
            cells_i8[6, t, p] = src
            q_out[t, p] = q
            xa_out[t, p] = xa
            xb_out[t, p] = xb
            pnl_out[t, p] = pnl
            liq_px[0, p] = lpx_a
            liq_px[1, p] = lpx_b
            if use_cap:
                unused[t, p] = cpp * (1.0 - notional / even)
            # state for the next bar
            d_prev[p] = D
            h_prev[p] = H
            a_prev[p] = A
            seg_prev[p] = seg
            xh_prev_a[p] = xh_a
            xh_prev_b[p] = xh_b
        # this bar's trades, in (pair rank, leg) order: a liquidation close, then any other change of the leg
        for r in range(P):
            p = by_rank[r]
            for leg in range(2):
                x = xa_out[t, p] if leg == 0 else xb_out[t, p]
                xp = xa_prev[p] if leg == 0 else xb_prev[p]
                is_liq = cells_i8[3 + leg, t, p] != 0
                m = ia[p] if leg == 0 else ib[p]
                if is_liq:
                    px = liq_px[leg, p]
                    qty = -xp
                    ti[n_t, 0], ti[n_t, 1], ti[n_t, 2], ti[n_t, 3] = t, p, leg, 6
                    tf[n_t, 0], tf[n_t, 1], tf[n_t, 2], tf[n_t, 3] = qty, px, abs(qty) * px * taker_m[m], 0.0
                    n_t += 1
                dq = x if is_liq else x - xp
                if dq != 0:
                    px = mid_raw[t, m]
                    traded_usd = abs(dq) * px
                    ti[n_t, 0], ti[n_t, 1], ti[n_t, 2] = t, p, leg
                    ti[n_t, 3] = 2 if is_liq else bar_code[p]
                    tf[n_t, 0], tf[n_t, 1] = dq, px
                    tf[n_t, 2], tf[n_t, 3] = traded_usd * bar_fee[leg, p], traded_usd * bar_hs[leg, p]
                    n_t += 1
        for p in range(P):
            xa_prev[p] = xa_out[t, p]
            xb_prev[p] = xb_out[t, p]
    # positions still open after the last bar
    for p in range(P):
        if a_prev[p] != 0:
            t0 = ep_t0[p]
            pi[n_p, 0], pi[n_p, 1], pi[n_p, 2], pi[n_p, 3] = p, t0, -1, T - 1
            pi[n_p, 4], pi[n_p, 5] = a_prev[p], 0
            pi[n_p, 6] = ep_src[p]
            pf[n_p, 0], pf[n_p, 1], pf[n_p, 2] = ep_q[p], ep_ea[p], ep_eb[p]
            pf[n_p, 3] = cs[p] - ep_cs[p]
            pf[n_p, 4] = cf[p] - ep_cf[p]
            pf[n_p, 5] = ep_unused[p]
            n_p += 1
    last = np.empty((3, P))  # the last bar's entry prices and resize bar (the open book's)
    last[0], last[1], last[2] = e_a, e_b, seg_prev
    return unused, last, sums, in_market, counts, ti[:n_t], tf[:n_t], pi[:n_p], pf[:n_p]
