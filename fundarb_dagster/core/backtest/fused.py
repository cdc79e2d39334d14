"""The fused simulator `run_backtest` uses: the rules of engine.py for one parameter set, as one compiled loop
over bars and pairs (numba) that books every item and emits the trade and position rows as it goes.

The vectorized full simulator (full_block.py) computes the same thing in ~40 whole-array passes over `(G, P, T)`
blocks, then the tables are found again in those arrays (nonzero, lexsort): at 1 M pair-bars that is memory
traffic, not arithmetic. Here each cell is visited once, bar by bar with the pairs inside in name order, reading
the panel's own `(T, M)` rows (no legs gathered or transposed: a bar's row is in L1 for every pair), keeping each
pair's state in a row of two small arrays, and writing the `(T, P)` arrays `BacktestResult.arrays` keeps, the
per-bar sums of the equity table, and the trade rows (in the table's (ts, pair, leg) order as they happen) and
position rows. Every item is the same floating-point expression, in the same order, as in full_block.py and
block.py, and the per-bar sums over pairs add in the vectorized engine's order (pairs in blocks of
`block.block_step`, then the blocks): the tables are equal to the full simulator's figure for figure (tests/core/
backtest/test_fused.py compares them frame for frame). The run totals (`attribution`) add the per-bar sums: they
agree with the vectorized engine's block-wise totals to the last bits (~1e-15 relative), not exactly.

The rules' steps are scalar functions the loop inlines (numba counts references atomically on every call of a
function that takes arrays, inlined or not: the loop writes its trade and position rows itself, where a helper
per row cost ~8 % of the loop in NRT_incref/decref under `perf`; the per-bar sums, once a bar, and the positions
still open after the last bar take them). Compiled once per machine
(`cache=True`: numba stores the machine code beside this module, ~16 s of CPU the first time), then each call
is the loop alone. Pairs outer, each pair's state in local scalars (in tiles of 256 bars, so the panel's rows stay
in cache), measured slower: 99.5 vs 77.5 ms CPU at 1 M pair-bars (interleaved, load ~8): the ~40 scalars of
state spill from the registers anyway, and a pair's columns are read from L2 where a bar's row is in L1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ..units import HOURS_PER_YEAR
from .block import PARTS, bars, block_step
from .panel import Panel
from .strategies import PairSet

# per-bar sums the kernel returns, in this order (rows of `sums`, `(SUMS, T)`: each a contiguous series)
SUMS = ("pnl", *PARTS, "traded_notional", "gross_exposure", "mark")
_N_SUMS = len(SUMS)
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
    """One run of the fused simulator: `totals` as engine._run_blocks adds them up for one grid point (`(1, ...)`
    arrays: pnl_t, parts_t, parts, mark_t, in_market, gross_exposure and the counters), the per-cell arrays
    `BacktestResult.arrays` keeps, and the trade and position rows."""

    totals: dict[str, Any]
    cells: dict[str, np.ndarray]
    # rows by column (each column contiguous: what the tables read)
    trade_ints: np.ndarray  # (4, n): bar, pair, leg, reason code, in (ts, pair rank, leg) order
    trade_floats: np.ndarray  # (4, n): signed qty, price, fee, slippage
    position_ints: np.ndarray  # (7, n), in the order the positions closed (the table sorts them)
    position_floats: np.ndarray  # (6, n)


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
    cells_f = np.empty((5 if use_cap else 4, T, P))  # q, xa, xb, pnl, (sizing by capacity) capital unused
    rows = tuple(np.ascontiguousarray(a) for a in (panel.mid, panel.ref, panel.ref_high, panel.ref_low,
                                                   panel.funding_cash, panel.half_spread))  # fmt: skip
    flt = (params.slippage_bps / 1e4, params.capital / P, panel.bar_h, params.units, params.enter_apr,
           params.exit_apr, params.leverage, params.stop_distance)  # fmt: skip
    flt = tuple(float(v) for v in flt)
    hours = np.array([float(params.max_hold_h), float(params.rebalance_h)])
    max_bars, reb_bars = (int(b) for b in bars(hours, panel.bar_h))
    ints = (int(taker_exec), int(use_cap), max_bars, reb_bars, int(halt))
    taker, mmr = (np.array([getattr(m, k) for m in markets], dtype=float) for k in ("taker_fee", "mmr"))
    markets_in = (fee, taker, mmr, perp, tier_lo, tier_n, tiers)
    # per pair, worked out once (no division in the loop): the block's borrow flag per leg, where the pair sits in
    # its block of the per-bar sums (first, last, in the first block), and rule 3's even notional (the loop's
    # expression: the same figures)
    at, blocks = np.arange(P) % step, np.arange(P) // step
    edges = np.stack([at == 0, (at == step - 1) | (np.arange(P) == P - 1), blocks == 0])
    cost = [np.where(perp[idx], 1.0 / float(params.leverage), 1.0) for idx in (pairs.leg_a, pairs.leg_b)]
    even = float(params.capital / P) / (cost[0] + cost[1])
    pair_in = (np.asarray(pairs.allow_reverse, dtype=np.bool_), _per_bar(pairs.reverse_cost_apr, T), borrow,
               np.ascontiguousarray(has_borrow[:, blocks]), np.full((1, P), np.nan) if cap is None else
               np.ascontiguousarray(cap, dtype=float), edges, even)  # fmt: skip
    legs = np.stack([pairs.leg_a, pairs.leg_b]).astype(np.int64)
    by_rank = np.argsort(rank, kind="stable").astype(np.int64)
    args = (np.ascontiguousarray(pairs.signal), legs, by_rank, rows, markets_in, pair_in, flt, ints)
    # trade and position rows, preallocated: a share of the cells; a run with more rows than that is run again with
    # room for exactly as many
    n_trades, n_positions = int(TRADE_ROWS_PER_CELL * T * P) + 16, int(POSITION_ROWS_PER_CELL * T * P) + 16
    for _ in range(2):
        out = (np.empty((_TI, n_trades), np.int64), np.empty((_TF, n_trades)),
               np.empty((_PI, n_positions), np.int64), np.empty((_PF, n_positions)))  # fmt: skip
        sums, in_market, counts, last, n_t, n_p = _kernel(*args, (cells_i8, cells_f), out)
        if n_t <= n_trades and n_p <= n_positions:
            break
        n_trades, n_positions = max(n_t, n_trades), max(n_p, n_positions)
    cells = _cells(cells_i8, cells_f, last)
    ti, tf, pi, pf = out[0][:, :n_t], out[1][:, :n_t], out[2][:, :n_p], out[3][:, :n_p]
    return Fused(_totals(sums, in_market, counts), cells, ti, tf, pi, pf)


def _totals(sums: np.ndarray, in_market: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """The loop's per-bar sums `(SUMS, T)` and counters as engine._run_blocks's totals of one grid point; the run
    totals add the per-bar sums."""
    by_bar = {name: sums[k][None] for k, name in enumerate(SUMS)}
    parts_t = {k: by_bar[k] for k in (*PARTS, "traded_notional")}
    return {
        "pnl_t": by_bar["pnl"],
        "mark_t": by_bar["mark"],
        "parts_t": parts_t,
        "parts": {k: v.sum(axis=1) for k, v in parts_t.items()},
        "in_market": in_market[None],
        "gross_exposure": by_bar["gross_exposure"],
        "entries": counts[0:1],
        "held_pair_bars": counts[1:2],
        "liquidations": counts[2:3],
        "stops": counts[3:4],
    }


def _cells(cells_i8: np.ndarray, cells_f: np.ndarray, last: np.ndarray) -> dict[str, np.ndarray]:
    """The per-cell arrays as `simulate` returns them, `(1, T, P)`, and the open book's entry prices and resize
    bars: the last bar's only, `(1, 1, P)`. The open book reads nothing else; `simulate`'s every bar would cost the
    loop three more `(T, P)` arrays, and records.positions reads its entry prices at each entry where the fused
    simulator keeps them in the position rows."""
    cells: dict[str, np.ndarray] = {}
    for k, name in enumerate(("A", "H", "D", "liq_a", "liq_b", "stopped", "size_src")):
        cells[name] = cells_i8[k][None].view(bool) if name in ("liq_a", "liq_b", "stopped") else cells_i8[k][None]
    for k, name in enumerate(("q", "xa", "xb", "pnl", "unused")[: len(cells_f)]):
        cells[name] = cells_f[k][None]
    if len(cells_f) == 4:  # the even split: no size sources
        del cells["size_src"]
    cells["e_a"], cells["e_b"] = last[0][None, None], last[1][None, None]
    cells["seg"] = last[2].astype(np.int64)[None, None]
    return cells


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


@numba.njit(cache=True, error_model="numpy", inline="always")
def _direction(s: float, rc: float, enter: float, exit_: float, allow: bool, pos: bool, neg: bool) -> tuple[bool, bool]:
    """Rule 1's hysteresis at one bar: the long and the reverse state after signal `s`."""
    nan = not np.isfinite(s)
    if s >= enter:
        pos = True
    elif (s <= exit_) or nan:
        pos = False
    if allow and s <= -(enter + rc):
        neg = True
    elif (s >= -(exit_ + rc)) or nan:
        neg = False
    return pos, neg


@numba.njit(cache=True, error_model="numpy", inline="always")
def _episode(t: int, D: int, d_prev: int, sidx: int, age_mod: int, max_bars: int, reb_bars: int,
             reb: int) -> tuple[int, int, int, int]:  # fmt: skip
    """Rule 2 and rule 3's resize bar at bar t: the episode start, H after the holding limit, age modulo `reb`
    (counted, no division) and seg = sidx + (age // reb) * reb_bars clipped at 0."""
    if D != 0 and d_prev != D:
        sidx = t
    age = t - sidx
    H = D if (max_bars <= 0 or age < max_bars) else 0
    age_mod = 0 if sidx == t else (age_mod + 1 if age_mod + 1 < reb else 0)
    seg = t - age_mod if reb_bars > 0 else sidx
    return sidx, H, age_mod, max(seg, 0)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _sized(c: float, even: float) -> tuple[float, int]:
    """Rule 3 under sizing by capacity: the even notional capped at capacity `c` (NaN: no book), and its source."""
    src = 0 if np.isnan(c) else (2 if c < even else 1)
    return (even if np.isnan(c) else (c if np.isnan(even) else min(even, c))), src


@numba.njit(cache=True, error_model="numpy", inline="always")
def _leg_event(perp: bool, xh: float, xp: float, seg_changed: bool, cash: float, high: float, low: float, ref: float,
               stop: float, cum: float, cum_seg: float, liq_next: float, mmr_next: float, entry: float, lev: float,
               mmr: float, taker: float) -> tuple:  # fmt: skip
    """Rule 5 on one leg at a bar (full_block._leg_events): breached or stopped, the liquidation price and
    forfeited rate checked, and the leg's state after the bar (funding sum, that sum at the resize, the flat
    mmr's liquidation price and rate the next bar is checked against, the wallet per unit, and whether that price
    was priced again: a leg with tiers is then priced by `_tiered`). `xh`: units on the never-stopped path now,
    `xp`: at the bar before. The price is a function of the units, the mid at the resize and the funding since
    it: with none of them changed (no settlement at the bar) it is the bar before's, the same figures, not
    computed again (four divisions a leg)."""
    brk, stp, lpx, mmr_used, per_unit, priced, cum_before = False, False, np.nan, mmr, 0.0, False, cum
    if perp:
        if xp != 0:  # held at t-1 (else nothing can happen, and the cumsum's increment is a zero)
            cum += -xp * cash
            lpx, mmr_used = liq_next, mmr_next
            brk, stp = _leg_check(xp, lpx, high, low, ref, stop)
        if seg_changed:
            cum_seg = cum
        if xh != 0 and (seg_changed or xh != xp or cum != cum_before):  # held at t, on other terms than at t-1
            size = abs(xh)
            wallet = size * entry / lev + cum - cum_seg
            per_unit = wallet / size if size > 0 else 0.0
            liq_next, mmr_next, priced = _flat_liquidation(entry, per_unit, mmr, taker, xh < 0), mmr, True
    return brk, stp, lpx, mmr_used, cum, cum_seg, liq_next, mmr_next, per_unit, priced


@numba.njit(cache=True, error_model="numpy", inline="always")
def _reason(liq: bool, stopped: bool, ap: int, A: int, t: int, halt: int, D: int, H: int) -> int:
    """Why the position changed at the bar: the index in records.REASONS (records._reason_codes)."""
    if liq:
        return 6
    if stopped:
        return 5
    if ap != 0 and A == 0 and t == halt:
        return 7
    if ap != 0 and A == 0 and D != 0 and H == 0:
        return 4
    if ap != 0 and A == 0 and D == 0:
        return 3
    if ap == 0 and A != 0:
        return 2
    return 1 if (ap != 0 and A != 0 and ap != A) else 0


@numba.njit(cache=True, error_model="numpy", inline="always")
def _exit_reason(A: int, liq: bool, stopped: bool, t: int, halt: int, D: int) -> int:
    """Why a position closed at the bar: the index in records.EXIT_REASONS (records.positions)."""
    if A != 0:
        return 1
    if liq:
        return 2
    if stopped:
        return 3
    if t == halt:
        return 4
    return 5 if D != 0 else 6


@numba.njit(cache=True, error_model="numpy")
def _position_row(pi: np.ndarray, pf: np.ndarray, n: int, p: int, t1: int, last: int, direction: int, why: int,
                  ep_t: int, ep_src: int, ep: tuple[float, float, float, float, float, float], cs: float,
                  cf: float) -> int:  # fmt: skip
    """Position row n: pair p's open episode (entry bar, size source; units, entry prices, PnL and funding sums
    before it, capital unused), closed at t1 (-1: still open); n + 1 (counted only past the rows' end). `_bars`
    writes the same layout inline for the positions it closes (no call there: numba's refcounts): change both."""
    if n < pi.shape[1]:
        pi[0, n], pi[1, n], pi[2, n], pi[3, n] = p, ep_t, t1, last
        pi[4, n], pi[5, n], pi[6, n] = direction, why, ep_src
        pf[0, n], pf[1, n], pf[2, n] = ep[0], ep[1], ep[2]
        pf[3, n], pf[4, n], pf[5, n] = cs - ep[3], cf - ep[4], ep[5]
    return n + 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _episode_floats(st_f: np.ndarray, p: int) -> tuple[float, float, float, float, float, float]:
    """Pair p's open episode's floats (`_position_row`)."""
    return st_f[p, _EP], st_f[p, _EP + 1], st_f[p, _EP + 2], st_f[p, _EP + 3], st_f[p, _EP + 4], st_f[p, _EP + 5]


# a pair's state between bars, one row per pair: integers (rule 1's states, the last bar's D, the episode start,
# H and A, the resize bar, the age modulo the rebalance, the episode stopped; the open episode's entry bar and size
# source) and floats (per leg a, b: the mid at the resize, the never-stopped path's funding sum and that sum at
# the resize, the liquidation price and rate the next bar is checked against, the units on the never-stopped path
# and held; the PnL and funding sums; the open episode's `_position_row` floats), with their values before bar 0
_POS, _NEG, _D, _SIDX, _H, _A, _SEG, _AGE, _KILLED, _EP_T, _EP_SRC = range(11)
_STATE_I = np.array([0, 0, 0, -1, 0, 0, -1, 0, -1, 0, 0], dtype=np.int64)
_ENT, _CUM, _CSEG, _LIQ_NEXT, _MMR_NEXT, _XH, _X = 0, 2, 4, 6, 8, 10, 12  # + leg
_CS, _CF, _EP = 14, 15, 16
_STATE_F = np.array([0.0] * 6 + [np.nan, np.nan] + [0.0] * 14)


@numba.njit(cache=True, error_model="numpy")
def _kernel(sig: np.ndarray, legs: np.ndarray, by_rank: np.ndarray, rows: tuple, markets: tuple, pair_in: tuple,
            flt: tuple, ints: tuple, cells: tuple, out: tuple) -> tuple:  # fmt: skip
    """The loop (`_bars`; arrays as `run_fused` lays them out, outputs written in place), then the positions still
    open: the per-bar sums `(SUMS, T)`, in_market, the counters, the open book's entry prices and resize bars
    `(3, P)`, and the numbers of trade and position rows."""
    T, P = sig.shape
    sums = np.zeros((_N_SUMS, T))
    in_market = np.zeros(T, np.bool_)
    counts = np.zeros(4, np.int64)  # entries, held pair-bars, liquidations, stops
    st_i, st_f = np.empty((P, len(_STATE_I)), np.int64), np.empty((P, len(_STATE_F)))
    st_i[:], st_f[:] = _STATE_I, _STATE_F
    acc = (sums, in_market, counts, st_i, st_f)
    n_t, n_p = _bars(sig, legs, by_rank, rows, markets, pair_in, flt, ints, cells, out, acc)
    pi, pf = out[2], out[3]
    last = np.empty((3, P))
    for p in range(P):
        if st_i[p, _A] != 0:  # still open after the last bar
            n_p = _position_row(pi, pf, n_p, p, -1, T - 1, st_i[p, _A], 0, st_i[p, _EP_T], st_i[p, _EP_SRC],
                                _episode_floats(st_f, p), st_f[p, _CS], st_f[p, _CF])  # fmt: skip
        last[0, p], last[1, p], last[2, p] = st_f[p, _ENT], st_f[p, _ENT + 1], st_i[p, _SEG]
    return sums, in_market, counts, last, n_t, n_p


@numba.njit(cache=True, error_model="numpy")
def _bars(sig: np.ndarray, legs: np.ndarray, by_rank: np.ndarray, rows: tuple, markets: tuple, pair_in: tuple,
          flt: tuple, ints: tuple, cells: tuple, out: tuple, acc: tuple) -> tuple:  # fmt: skip
    """Every bar, pairs inside in name order (the trade table's order: rows written as they happen), each pair's
    state in its rows of `st_i`, `st_f`; the per-bar sums added afterwards in the vectorized engine's order."""
    mid_raw, ref, high, low, cash, hs_raw = rows
    fee_m, taker_m, mmr_m, perp_m, tier_lo, tier_n, tiers = markets
    allow_rev, rcost, borrow, charged, cap, edges, even_p = pair_in
    slip_model, cpp, bar_h, units, enter, exit_, lev, stop = flt
    taker_exec, use_cap, max_bars, reb_bars, halt = ints
    (cells_i8, cells_f), (ti, tf, pi, pf), (sums, in_market, counts, st_i, st_f) = cells, out, acc
    T, P = sig.shape
    dated_fee, dated_rc, dated_borrow = fee_m.shape[0] > 1, rcost.shape[0] > 1, borrow.shape[0] > 1
    reb, n_t, n_p, room, room_p = max(reb_bars, 1), 0, 0, ti.shape[1], pi.shape[1]
    ev = np.zeros((2, 5))  # per leg at the cell: breached, stopped, liquidation price and rate checked, its fee
    vals, blk = np.zeros((P, _N_SUMS)), np.zeros(_N_SUMS)  # this bar's items per pair (SUMS order), a block's sums
    for t in range(T):
        tfe, tr, tb = t if dated_fee else 0, t if dated_rc else 0, t if dated_borrow else 0
        for r in range(P):
            p = by_rank[r]
            # 1-3: direction, episode, size
            s, pos, neg = sig[t, p], st_i[p, _POS] != 0, st_i[p, _NEG] != 0
            pos, neg = _direction(s, rcost[tr, p], enter, exit_, allow_rev[p], pos, neg)
            D = np.int64(pos) - np.int64(neg)
            sidx_prev, ap, seg_prev = st_i[p, _SIDX], st_i[p, _A], st_i[p, _SEG]
            sidx, H, age_mod, seg = _episode(t, D, st_i[p, _D], sidx_prev, st_i[p, _AGE], max_bars, reb_bars, reb)
            even = even_p[p]
            notional, src = even, 0
            if use_cap:
                notional, src = _sized(cap[max(sidx, 0) if cap.shape[0] > 1 else 0, p], even)
                if not notional > 0:
                    H = 0
            held = H != 0
            if seg != seg_prev:  # mid at the resize (NaN as 0, as block.legs_of)
                for leg in range(2):
                    st_f[p, _ENT + leg] = _nan_to_num(mid_raw[seg, legs[leg, p]])
            q = (units if units > 0 else notional / st_f[p, _ENT]) if held else 0.0
            # 5. liquidation and stop events on the never-stopped path
            for leg in range(2):
                m = legs[leg, p]
                xh = np.float64(-H if leg == 0 else H) * q
                e = _leg_event(perp_m[m], xh, st_f[p, _XH + leg], seg != seg_prev, cash[t, m], high[t, m], low[t, m],
                               ref[t, m], stop, st_f[p, _CUM + leg], st_f[p, _CSEG + leg], st_f[p, _LIQ_NEXT + leg],
                               st_f[p, _MMR_NEXT + leg], st_f[p, _ENT + leg], lev, mmr_m[m], taker_m[m])  # fmt: skip
                ev[leg, 0], ev[leg, 1], ev[leg, 2], ev[leg, 3] = e[0], e[1], e[2], e[3]
                st_f[p, _CUM + leg], st_f[p, _CSEG + leg] = e[4], e[5]
                st_f[p, _LIQ_NEXT + leg], st_f[p, _MMR_NEXT + leg] = e[6], e[7]
                if e[9] and tier_n[m] > 0:
                    tier = _tiered(st_f[p, _ENT + leg], e[8], abs(xh), xh < 0, tiers, tier_lo[m], tier_n[m], taker_m[m])
                    st_f[p, _LIQ_NEXT + leg], st_f[p, _MMR_NEXT + leg] = tier
                st_f[p, _XH + leg] = xh
            if (ev[0, 0] or ev[1, 0] or ev[0, 1] or ev[1, 1]) and st_i[p, _H] != 0:  # rule 2: flat to the episode's end
                st_i[p, _KILLED] = max(st_i[p, _KILLED], sidx_prev)
            A = 0 if ((held and st_i[p, _KILLED] == sidx) or t >= halt) else H
            liq_a, liq_b = ev[0, 0] != 0 and ap != 0, ev[1, 0] != 0 and ap != 0
            stopped = (ev[0, 1] != 0 or ev[1, 1] != 0) and ap != 0 and not (liq_a or liq_b)
            code = _reason(liq_a or liq_b, stopped, ap, A, t, halt, D, H)
            # 4. accounting per leg (block.leg_costs; block.pair_parts adds leg a's item and leg b's), the leg's trades:
            # a liquidation close at its price, then any other change at mid (past the rows' end: counted only)
            for leg in range(2):
                m, liq = legs[leg, p], liq_a if leg == 0 else liq_b
                x, xp, lpx = np.float64(-A if leg == 0 else A) * q, st_f[p, _X + leg], ev[leg, 2]
                mid = _nan_to_num(mid_raw[t, m])
                mid_prev = _nan_to_num(mid_raw[t - 1, m]) if t > 0 else mid
                fee, hs = fee_m[tfe, m], 0.0
                if taker_exec:
                    hs = hs_raw[t, m] if np.isfinite(hs_raw[t, m]) else slip_model
                rate = 0.0 if perp_m[m] else borrow[tb, p]
                c = _leg_costs(x, xp, liq, lpx, mid, mid_prev, cash[t, m], fee, hs, taker_m[m], ev[leg, 3],
                               charged[leg, p], rate, bar_h)  # fmt: skip
                for k in range(6):
                    vals[p, 1 + k] = c[k] if leg == 0 else vals[p, 1 + k] + c[k]
                vals[p, 7] = c[7] if leg == 0 else vals[p, 7] + c[7]
                vals[p, 8] = abs(x) * mid if leg == 0 else vals[p, 8] + abs(x) * mid
                ev[leg, 4] = c[6]  # the liquidation fee (within fees), which rule 6's mark charges
                if liq and n_t < room:
                    ti[0, n_t], ti[1, n_t], ti[2, n_t], ti[3, n_t] = t, p, leg, 6
                    tf[0, n_t], tf[1, n_t], tf[2, n_t], tf[3, n_t] = -xp, lpx, abs(-xp) * lpx * taker_m[m], 0.0
                dq, px, n_t = x if liq else x - xp, mid_raw[t, m], n_t + liq
                if dq != 0 and n_t < room:
                    ti[0, n_t], ti[1, n_t], ti[2, n_t], ti[3, n_t] = t, p, leg, 2 if liq else code
                    tf[0, n_t], tf[1, n_t], tf[2, n_t], tf[3, n_t] = dq, px, abs(dq) * px * fee, abs(dq) * px * hs
                n_t += dq != 0
                st_f[p, _X + leg] = x
                cells_f[1 + leg, t, p] = x
            basis, fund, borr, liqc = vals[p, 1], vals[p, 2], vals[p, 3], vals[p, 6]
            pnl = basis + fund - borr - vals[p, 4] - vals[p, 5] - liqc
            vals[p, 0], vals[p, 9] = pnl, basis + fund - borr - liqc - ev[0, 4] - ev[1, 4]
            if A != 0:
                in_market[t] = True
                counts[1] += 1
                counts[0] += ap != A
            counts[2], counts[3] = counts[2] + (liq_a or liq_b), counts[3] + stopped
            # positions (records.positions): a run of constant non-zero A
            cs, cf = pnl if t == 0 else st_f[p, _CS] + pnl, fund if t == 0 else st_f[p, _CF] + fund
            if ap != 0 and ap != A and n_p < room_p:  # closed: its row (`_position_row`, written here: no call)
                pi[0, n_p], pi[1, n_p], pi[2, n_p], pi[3, n_p], pi[4, n_p] = p, st_i[p, _EP_T], t, t, ap
                pi[5, n_p], pi[6, n_p] = _exit_reason(A, liq_a or liq_b, stopped, t, halt, D), st_i[p, _EP_SRC]
                pf[0, n_p], pf[1, n_p], pf[2, n_p] = st_f[p, _EP], st_f[p, _EP + 1], st_f[p, _EP + 2]
                pf[3, n_p], pf[4, n_p], pf[5, n_p] = cs - st_f[p, _EP + 3], cf - st_f[p, _EP + 4], st_f[p, _EP + 5]
            n_p += ap != 0 and ap != A
            unused = cpp * (1.0 - notional / even) if use_cap else 0.0
            if A != 0 and ap != A:
                st_i[p, _EP_T], st_i[p, _EP_SRC] = t, src
                st_f[p, _EP], st_f[p, _EP + 1], st_f[p, _EP + 2] = q, st_f[p, _ENT], st_f[p, _ENT + 1]
                st_f[p, _EP + 3], st_f[p, _EP + 4] = st_f[p, _CS] if t > 0 else 0.0, st_f[p, _CF] if t > 0 else 0.0
                st_f[p, _EP + 5] = unused
            st_f[p, _CS], st_f[p, _CF] = cs, cf
            cells_i8[0, t, p], cells_i8[1, t, p], cells_i8[2, t, p], cells_i8[3, t, p] = A, H, D, liq_a
            cells_i8[4, t, p], cells_i8[5, t, p], cells_i8[6, t, p] = liq_b, stopped, src
            cells_f[0, t, p], cells_f[3, t, p] = q, pnl
            if use_cap:
                cells_f[4, t, p] = unused
            st_i[p, _POS], st_i[p, _NEG], st_i[p, _D], st_i[p, _SIDX], st_i[p, _H] = pos, neg, D, sidx, H
            st_i[p, _A], st_i[p, _SEG], st_i[p, _AGE] = A, seg, age_mod
        _bar_sums(vals, edges, blk, sums, t)
    return n_t, n_p


@numba.njit(cache=True, error_model="numpy")
def _bar_sums(vals: np.ndarray, edges: np.ndarray, blk: np.ndarray, sums: np.ndarray, t: int) -> None:
    """Bar t's sums of the pairs' items `vals` in the vectorized engine's order: pairs within a block, then the
    blocks (`edges`: each pair first in its block, last in it, in the first block)."""
    for p in range(vals.shape[0]):
        for k in range(_N_SUMS):
            blk[k] = vals[p, k] if edges[0, p] else blk[k] + vals[p, k]
        if edges[1, p]:
            for k in range(_N_SUMS):
                sums[k, t] = blk[k] if edges[2, p] else sums[k, t] + blk[k]
