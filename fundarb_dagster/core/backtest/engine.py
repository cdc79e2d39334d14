"""The vectorized backtest engine: whole time axis and whole parameter grid at once, arrays `(G, T, P)`
(grid points x bars x pairs). No Python loop over time.

Rules (the reference event loop in tests/core/backtest/reference_loop.py implements the same, plainly):

1. Desired direction `D[t]` per pair from its signal (expected carry APR known at t), with hysteresis:
   enter +1 when `signal >= enter_apr`, leave when `signal <= exit_apr`; reverse -1 (where allowed) when
   `signal <= -(enter_apr + reverse_cost)`, leave when `signal >= -(exit_apr + reverse_cost)`. NaN: flat.
2. An *episode* starts when D becomes non-zero or flips. It is held at most `max_hold_h`; after that, and
   after a liquidation or risk stop, the pair stays flat until the episode ends (no churning re-entry).
3. Sizing: both legs hold the same units (delta-neutral in the underlying), `q = notional / mid_A` at the
   episode start and again every `rebalance_h` (the hedge is resized to the target notional and each perp's
   isolated wallet reset to `notional / leverage`: collateral moved between venues). Capital is split evenly
   over the pairs; each pair's notional = capital share / (spot legs + perp legs / leverage).
4. Accounting per bar `u` for positions decided at `u-1`: basis PnL marked to mid; funding booked in bar u
   (`panel.funding_cash`); borrow on a short spot leg; fees and slippage on every traded quantity at `u`.
5. Liquidation: each perp leg's liquidation price (accounting.liquidation_price) uses the wallet after the
   funding booked up to `u-1`; if the bar's reference high (short) / low (long) crosses it, the leg is closed
   at that price (no funding for that bar, liquidation fee and forfeited maintenance margin charged) and the
   other leg at mid. Risk stop: when the reference close is within `stop_distance` of the liquidation price,
   both legs close at mid at `u`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from .accounting import half_spread_or_model
from .metrics import drawdown, performance
from .panel import Panel
from .strategies import PairSet

GRID_FIELDS = ("enter_apr", "exit_apr", "max_hold_h", "leverage", "rebalance_h", "stop_distance")


@dataclass(frozen=True)
class BacktestParams:
    enter_apr: float = 0.10  # enter when expected carry (APR, fraction) reaches this
    exit_apr: float = 0.02  # leave when it falls to this (0 <= exit < enter)
    max_hold_h: float = 0.0  # 0: no limit
    leverage: float = 3.0  # perp legs' leverage (isolated margin = notional / leverage)
    rebalance_h: float = 0.0  # resize to target notional every N hours; 0: never
    stop_distance: float = 0.0  # risk stop when within this fraction of the liquidation price; 0: off
    capital: float = 1_000_000.0
    execution: str = "taker"  # "taker": taker fee + half-spread; "maker": maker fee, no spread crossed
    slippage_bps: float = 2.0  # half-spread model where no quotes were recorded

    def __post_init__(self) -> None:
        validate_params({f: np.array([getattr(self, f)], dtype=float) for f in GRID_FIELDS})
        if self.capital <= 0:
            raise ValueError(f"capital: {self.capital!r} must be > 0")
        if self.execution not in ("taker", "maker"):
            raise ValueError(f"execution: {self.execution!r} must be 'taker' or 'maker'")
        if self.slippage_bps < 0:
            raise ValueError(f"slippage_bps: {self.slippage_bps!r} must be >= 0")


def validate_params(grid: dict[str, np.ndarray]) -> None:
    """Clear errors for impossible parameter values (naming the field and the value)."""
    enter, exit_ = grid["enter_apr"], grid["exit_apr"]
    checks = [
        ("exit_apr", exit_, exit_ < 0, "must be >= 0"),
        ("enter_apr", enter, enter <= exit_, "must be > exit_apr"),
        ("leverage", grid["leverage"], grid["leverage"] <= 0, "must be > 0"),
        ("max_hold_h", grid["max_hold_h"], grid["max_hold_h"] < 0, "must be >= 0"),
        ("rebalance_h", grid["rebalance_h"], grid["rebalance_h"] < 0, "must be >= 0"),
        ("stop_distance", grid["stop_distance"], grid["stop_distance"] < 0, "must be >= 0"),
    ]
    for name, values, bad, why in checks:
        bad = np.asarray(bad) | ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"{name}: {float(np.asarray(values)[bad][0])!r} {why}")


def make_grid(base: BacktestParams, axes: dict[str, list[float]] | None = None) -> dict[str, np.ndarray]:
    """Cartesian product of `axes` over `base`'s grid fields -> `{field: (G,) array}`."""
    axes = axes or {}
    for name in axes:
        if name not in GRID_FIELDS:
            raise ValueError(f"grid: {name!r} is not a grid field; expected one of {GRID_FIELDS}")
    names = list(axes)
    combos = list(itertools.product(*(axes[n] for n in names))) or [()]
    grid = {f: np.full(len(combos), float(getattr(base, f))) for f in GRID_FIELDS}
    for k, n in enumerate(names):
        grid[n] = np.array([c[k] for c in combos], dtype=float)
    validate_params(grid)
    return grid


# -- small array helpers (time is axis 1) ------------------------------------------------------------------
# Arrays inside the engine are time-last, `(G, P, T)`, and pairs are processed in blocks of about
# BLOCK_CELLS cells: every pass then runs over contiguous, cache-sized memory (accumulations along time are
# contiguous too). Results are returned `(G, T, P)` like the panel.
BLOCK_CELLS = 70_000


def _shift(a: np.ndarray, fill: Any) -> np.ndarray:
    """One bar later along the last (time) axis, `fill` at the first bar."""
    out = np.empty_like(a)
    out[..., 0] = fill
    out[..., 1:] = a[..., :-1]
    return out


def _last_index(mask: np.ndarray) -> np.ndarray:
    """Index of the last True at or before each t along the last axis (-1 where none)."""
    # arithmetic instead of np.where (several times faster on large arrays): t where True, -1 elsewhere;
    # int32 when it fits: half the memory traffic of int64 in these passes
    dtype = np.int32 if mask.shape[-1] < 2**31 - 1 else np.int64
    idx = np.multiply(mask, np.arange(1, mask.shape[-1] + 1, dtype=dtype), dtype=dtype)
    idx -= 1
    np.maximum.accumulate(idx, axis=-1, out=idx)
    return idx


def _gather(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values `(P, T)` or `(G, P, T)` at time indices `idx` `(G, P, T)` (a flat take: faster than
    take_along_axis, which builds broadcast index tuples)."""
    G, P, T = idx.shape
    flat = idx + (np.arange(P) * T).reshape(1, P, 1)
    if values.ndim == 3 and values.shape[0] > 1:
        flat += (np.arange(G) * (P * T)).reshape(G, 1, 1)
    return np.take(values.reshape(-1), flat)


def hysteresis(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """State that switches on at `on`, off at `off` (on wins a tie) and otherwise keeps its value (time last)."""
    on, off = np.broadcast_arrays(on, off)
    # code 2 (t + 1) + on at every switch, 0 elsewhere: its running maximum is the last switch, and its lowest
    # bit that switch's kind (no gather of `on` at the last index needed)
    T = on.shape[-1]
    dtype = np.int32 if T < 2**30 else np.int64
    code = np.multiply(on | off, np.arange(2, 2 * T + 2, 2, dtype=dtype), dtype=dtype)
    code += on
    np.maximum.accumulate(code, axis=-1, out=code)
    return (code & 1).astype(bool)


@dataclass
class _Legs:
    """One leg of every pair, time-last `(P, T)`; per-pair constants as `(P, 1)` columns."""

    mid: np.ndarray  # NaN (not listed yet) as 0: never held there, so 0 x 0
    mid_prev: np.ndarray  # mid of the bar before (bar 0: its own)
    ref: np.ndarray
    high: np.ndarray
    low: np.ndarray
    cash: np.ndarray
    hs: np.ndarray
    is_perp: np.ndarray
    fee: np.ndarray  # execution fee
    taker: np.ndarray
    mmr: np.ndarray
    # derived once per panel for the grid-sharing path (they depend on no parameter)
    cum_cash: np.ndarray  # cumulative funding cash along time
    dmid: np.ndarray  # mid - mid_prev
    fee_px: np.ndarray  # fee per unit traded: mid x fee
    slip_px: np.ndarray  # slippage per unit traded: mid x half-spread

    def block(self, sl: slice) -> _Legs:
        return _Legs(**{name: getattr(self, name)[sl] for name in self.__dataclass_fields__})


def _legs(panel: Panel, idx: np.ndarray, execution: str, slippage_bps: float) -> _Legs:
    markets = [panel.markets[i] for i in idx]

    def col(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(-1, 1)

    def rows(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[:, idx].T)

    taker = col([m.taker_fee for m in markets])
    hs = rows(half_spread_or_model(panel.half_spread, slippage_bps))
    mid = np.nan_to_num(rows(panel.mid), nan=0.0)
    mid_prev = np.concatenate([mid[:, :1], mid[:, :-1]], axis=1)
    cash = rows(panel.funding_cash)
    hs = hs if execution == "taker" else np.zeros_like(hs)
    fee = taker if execution == "taker" else col([m.maker_fee for m in markets])
    return _Legs(
        mid=mid,
        mid_prev=mid_prev,
        ref=rows(panel.ref),
        high=rows(panel.ref_high),
        low=rows(panel.ref_low),
        cash=cash,
        hs=hs,
        is_perp=np.array([m.is_perp for m in markets], dtype=bool).reshape(-1, 1),
        fee=fee,
        taker=taker,
        mmr=col([m.mmr for m in markets]),
        cum_cash=np.cumsum(cash, axis=-1),
        dmid=mid - mid_prev,
        fee_px=mid * fee,
        slip_px=mid * hs,
    )


def prepare_legs(panel: Panel, pairs: PairSet, params: BacktestParams) -> tuple[_Legs, _Legs]:
    """Both legs' arrays gathered once from the panel (a sweep reuses them for every grid chunk)."""
    return (
        _legs(panel, pairs.leg_a, params.execution, params.slippage_bps),
        _legs(panel, pairs.leg_b, params.execution, params.slippage_bps),
    )


PARTS = ("basis", "funding", "borrow", "fees", "slippage", "liquidation")
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


def simulate(
    panel: Panel,
    pairs: PairSet,
    grid: dict[str, np.ndarray],
    params: BacktestParams,
    detail: bool = True,
    legs: tuple[_Legs, _Legs] | None = None,
) -> dict[str, Any]:
    """Run the accounting for every grid point, in blocks of pairs.

    detail=True: the full engine, all grid points at once on `(G, P, T)` arrays; returns the `(G, T, P)` arrays
    the trade/position tables need, per-bar attribution and gross exposure, and the aggregates below.
    detail=False (sweeps): `_fast_block`, which shares the work of grid points differing only in leverage and
    returns only the aggregates the metrics need: equity `(G, T)`, in_market `(G, T)`, attribution totals,
    traded_notional, entries, held_pair_bars, liquidations, stops `(G,)` (equal to the full engine's to ~1e-14
    of capital: only the order of floating-point sums differs)."""
    T, P = pairs.signal.shape
    G = len(grid["enter_apr"])
    la, lb = legs if legs is not None else prepare_legs(panel, pairs, params)
    signal = np.ascontiguousarray(pairs.signal.T)
    g = {name: np.asarray(grid[name], dtype=float).reshape(G, 1, 1) for name in GRID_FIELDS}
    # detail: the full (G, P, T) arrays for the tables; otherwise the grid-sharing path (same aggregates)
    cells = BLOCK_CELLS // max(G, 1) if detail else (BLOCK_CELLS if G == 1 else SWEEP_BLOCK_CELLS)
    step = max(1, cells // max(T, 1))
    total: dict[str, Any] = {}
    blocks: list[dict[str, Any]] = []
    for lo in range(0, P, step):
        sl = slice(lo, min(lo + step, P))
        args = (signal[sl], la.block(sl), lb.block(sl), pairs.allow_reverse[sl], pairs.reverse_cost_apr[sl],
                pairs.borrow_apr[sl], g, params.capital / P, panel.bar_h)  # fmt: skip
        out = _simulate_block(*args, detail) if detail else _fast_block(*args)
        for key, value in out.items():
            if key in ("detail", "parts_t", "parts"):
                continue
            total[key] = (
                value if key not in total else (total[key] | value if value.dtype == bool else total[key] + value)
            )
        for kind in ("parts", "parts_t") if detail else ("parts",):
            acc = total.setdefault(kind, {})
            for k, v in out[kind].items():
                acc[k] = v if k not in acc else acc[k] + v
        if detail:
            blocks.append(out["detail"])
    result: dict[str, Any] = {
        "equity": params.capital + np.cumsum(total["pnl_t"], axis=1),
        "attribution": {k: v for k, v in total["parts"].items() if k != "traded_notional"},
        "in_market": total["in_market"],
        "traded_notional": total["parts"]["traded_notional"],
        "entries": total["entries"],
        "held_pair_bars": total["held_pair_bars"],
        "liquidations": total["liquidations"],
        "stops": total["stops"],
    }
    if detail:
        result["attribution_t"] = {k: v for k, v in total["parts_t"].items() if k != "traded_notional"}
        result["gross_exposure"] = total["gross_exposure"]
        for name in DETAIL:
            joined = np.concatenate([b[name] for b in blocks], axis=1)
            result[name] = np.ascontiguousarray(joined.transpose(0, 2, 1))  # back to (G, T, P)
        result["parts"] = {
            k: np.ascontiguousarray(np.concatenate([b["parts"][k] for b in blocks], axis=1).transpose(0, 2, 1))
            for k in blocks[0]["parts"]
        }
        for leg, lg in (("a", la), ("b", lb)):
            result["hs_" + leg] = lg.hs.T
            result["fee_" + leg] = lg.fee.ravel()
            result["taker_" + leg] = lg.taker.ravel()
    return result


def _bars(hours: np.ndarray, bar_h: float) -> np.ndarray:
    """Hours -> whole bars (rounded up; 0 stays 0: no limit / never)."""
    return np.where(hours > 0, np.ceil(hours / bar_h - 1e-9), 0).astype(np.int64)


def _direction(
    sig: np.ndarray, allow_reverse: np.ndarray, reverse_cost: np.ndarray, enter: np.ndarray, exit_: np.ndarray
) -> np.ndarray:
    """Rule 1 on signals `(P, T)` for thresholds shaped `(G, 1, 1)`: the desired direction D `(G, P, T)` int8,
    with hysteresis (point in time: signal[t] is known at t)."""
    P, T = sig.shape
    shape = (len(enter), P, T)
    s = sig[None]
    nan = ~np.isfinite(s)
    pos = hysteresis(np.broadcast_to(s >= enter, shape), (s <= exit_) | nan)
    rev = allow_reverse.reshape(1, P, 1)
    shift = reverse_cost.reshape(1, P, 1)
    neg = hysteresis(np.broadcast_to(rev & (s <= -(enter + shift)), shape), (s >= -(exit_ + shift)) | nan)
    return pos.astype(np.int8) - neg.astype(np.int8)


def _episodes(D: np.ndarray, max_bars: np.ndarray, reb_bars: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule 2 and the resize bars of rule 3: episode start index sidx (-1 before the first), direction H after
    the holding limit, and seg, the bar of the last resize (episode start or rebalance). All `(G, P, T)`."""
    T = D.shape[-1]
    start = (D != 0) & (_shift(D, 0) != D)
    sidx = _last_index(start)
    age = np.arange(T).reshape(1, 1, T) - sidx
    H = D * ((max_bars <= 0) | (age < max_bars))
    seg = sidx + (age // np.maximum(reb_bars, 1)) * reb_bars  # reb_bars 0: the episode start
    np.clip(seg, 0, None, out=seg)
    return sidx, H, seg


def _simulate_block(
    sig: np.ndarray,
    la: _Legs,
    lb: _Legs,
    allow_reverse: np.ndarray,
    reverse_cost: np.ndarray,
    borrow_apr: np.ndarray,
    g: dict[str, np.ndarray],
    capital_per_pair: float,
    bar_h: float,
    detail: bool,
) -> dict[str, Any]:
    """The rules of the module docstring on one block of pairs, arrays `(G, P, T)`."""
    P, T = sig.shape
    G = g["enter_apr"].shape[0]
    shape = (G, P, T)
    enter, exit_, lev, stop = g["enter_apr"], g["exit_apr"], g["leverage"], g["stop_distance"]
    max_bars, reb_bars = _bars(g["max_hold_h"], bar_h), _bars(g["rebalance_h"], bar_h)

    # 1.-2. desired direction, episodes, holding limit, rebalance segments
    D = _direction(sig, allow_reverse, reverse_cost, enter, exit_)
    sidx, H, seg = _episodes(D, max_bars, reb_bars)

    # 3. sizing: equal units on both legs
    cost_a = np.where(la.is_perp, 1.0 / lev, 1.0)
    cost_b = np.where(lb.is_perp, 1.0 / lev, 1.0)
    notional = capital_per_pair / (cost_a + cost_b)  # (G, P, 1)
    e_a, e_b = _gather(la.mid, seg), _gather(lb.mid, seg)
    held = H != 0
    q = np.divide(notional, e_a, out=np.zeros(shape), where=held)
    xa_h, xb_h = -H * q, H * q

    # 4. liquidation and stop events on the hypothetical (never-stopped) path
    def leg_events(x_h: np.ndarray, e: np.ndarray, leg: _Legs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_prev = _shift(x_h, 0.0)
        if not leg.is_perp.any():
            none = np.zeros(shape, dtype=bool)
            return none, none, np.full(shape, np.nan)
        cum = np.cumsum(-x_prev * leg.cash, axis=-1)
        size = np.abs(x_h)
        wallet = size * e / lev + cum - _gather(cum, seg)
        # accounting.liquidation_price, inlined: flat legs (size 0) get a finite dummy never used
        per_unit = np.divide(wallet, size, out=np.zeros(shape), where=size > 0)
        liq_long = (e - per_unit) / (1.0 - leg.mmr - leg.taker)
        liq = liq_long + ((e + per_unit) / (1.0 + leg.mmr + leg.taker) - liq_long) * (x_h < 0)
        liq_prev = _shift(liq, np.nan)
        short, long = x_prev < 0, x_prev > 0
        with np.errstate(invalid="ignore"):
            breach = (short & (leg.high >= liq_prev)) | (long & (leg.low <= liq_prev))
        breach &= leg.is_perp
        if not (np.asarray(stop) > 0).any():
            return breach, np.zeros(shape, dtype=bool), liq_prev
        with np.errstate(invalid="ignore", divide="ignore"):
            dist = (liq_prev - leg.ref) * (2.0 * short - 1.0) / leg.ref
        stopped = (stop > 0) & (short | long) & (dist <= stop) & leg.is_perp & ~breach
        return breach, stopped, liq_prev

    brk_a, stop_a, liq_a_prev = leg_events(xa_h, e_a, la)
    brk_b, stop_b, liq_b_prev = leg_events(xb_h, e_b, lb)
    ev = brk_a | brk_b | stop_a | stop_b
    Hp = _shift(H, 0)
    ev_ep = np.multiply(ev & (Hp != 0), _shift(sidx, -1) + 1, dtype=np.int64)
    ev_ep -= 1  # the episode (start index) of each event, -1 where none
    np.maximum.accumulate(ev_ep, axis=-1, out=ev_ep)
    killed = held & (ev_ep == sidx)
    A = H * ~killed
    Ap = _shift(A, 0)
    open_prev = Ap != 0
    liq_a, liq_b = brk_a & open_prev, brk_b & open_prev
    stopped = (stop_a | stop_b) & open_prev & ~(liq_a | liq_b)

    # 5. accounting
    xa = -A * q  # q is finite everywhere (0 where never held)
    xb = A * q

    pa_ = _leg_costs(xa, _shift(xa, 0.0), liq_a, liq_a_prev, la.mid, la.mid_prev, la.cash, la.fee, la.hs,
                     la.taker, la.mmr, np.where(la.is_perp, 0.0, borrow_apr.reshape(P, 1)), bar_h)  # fmt: skip
    pb_ = _leg_costs(xb, _shift(xb, 0.0), liq_b, liq_b_prev, lb.mid, lb.mid_prev, lb.cash, lb.fee, lb.hs,
                     lb.taker, lb.mmr, np.where(lb.is_perp, 0.0, borrow_apr.reshape(P, 1)), bar_h)  # fmt: skip
    parts = _pair_parts(pa_, pb_)
    pnl = parts["basis"] + parts["funding"] - parts["borrow"] - parts["fees"] - parts["slippage"] - parts["liquidation"]
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
    if detail:
        full = {k: (v if np.ndim(v) else np.zeros(shape)) for k, v in parts.items()}
        out["detail"] = {
            "seg": seg, "A": A, "H": H, "D": D, "q": q, "xa": xa, "xb": xb, "pnl": pnl, "liq_a": liq_a,
            "liq_b": liq_b, "stopped": stopped, "liq_a_px": liq_a_prev, "liq_b_px": liq_b_prev, "e_a": e_a,
            "e_b": e_b, "parts": full,
        }  # fmt: skip
    return out


def _leg_costs(
    x: np.ndarray,
    x_prev: np.ndarray,
    liq: np.ndarray | None,
    liq_px: np.ndarray | None,
    mid: np.ndarray,
    mid_prev: np.ndarray,
    cash: np.ndarray,
    fee: np.ndarray,
    hs: np.ndarray,
    taker: np.ndarray,
    mmr: np.ndarray,
    borrow: np.ndarray,
    bar_h: float,
) -> dict[str, np.ndarray]:
    """Rule 4 and the liquidation close of rule 5 for one leg, elementwise: any shapes that broadcast (the
    `(G, P, T)` block, or the 1-D list of cells a sweep re-prices exactly). `liq=None`: no liquidation."""
    any_liq = liq is not None and bool(liq.any())
    end_px = np.where(liq, liq_px, mid) if any_liq else mid
    out = {"basis": x_prev * (end_px - mid_prev), "funding": -x_prev * cash}
    if any_liq:
        out["funding"][liq] = 0.0
    if (borrow > 0).any():
        out["borrow"] = np.maximum(-x_prev, 0.0) * mid_prev * (borrow * bar_h / 8760.0)
    traded = np.abs(x - x_prev)  # quantity traded at mid
    at_mid = traded * mid
    out["fees"] = at_mid * fee
    out["slippage"] = at_mid * hs
    out["traded_notional"] = at_mid
    if any_liq:
        # the liquidated quantity trades at the liquidation price, the new position (if any) at mid
        traded[liq] = np.abs(x[liq])
        at_mid = traded * mid
        liq_notional = np.where(liq, np.abs(x_prev) * np.nan_to_num(liq_px), 0.0)
        out["fees"] = at_mid * fee + liq_notional * taker
        out["slippage"] = at_mid * hs
        out["liquidation"] = liq_notional * mmr
        out["traded_notional"] = at_mid + liq_notional
    return out


def _pair_parts(pa_: dict[str, np.ndarray], pb_: dict[str, np.ndarray]) -> dict[str, Any]:
    """Both legs' items added; a part neither leg has (no borrow, no liquidation) is the scalar 0."""
    parts: dict[str, Any] = {}
    for k in (*PARTS, "traded_notional"):
        if k in pa_ and k in pb_:
            parts[k] = pa_[k] + pb_[k]
        else:
            parts[k] = pa_.get(k, pb_.get(k, 0.0))
    return parts


# -- the grid-sharing path (simulate(detail=False): sweeps) --------------------------------------------------
# Blocks of pairs of about this many (pair x bar) cells. There is no grid axis in these arrays (grid points are
# visited one by one, sharing their group's arrays). Measured: a single point runs ~2x faster in cache-sized
# blocks (BLOCK_CELLS), a grid ~25 % faster in larger ones (per-point Python overhead amortized over more cells).
SWEEP_BLOCK_CELLS = 250_000


def _adverse_extremes(leg: _Legs, stop: float) -> tuple[np.ndarray, np.ndarray]:
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


def _fast_block(
    sig: np.ndarray,
    la: _Legs,
    lb: _Legs,
    allow_reverse: np.ndarray,
    reverse_cost: np.ndarray,
    borrow_apr: np.ndarray,
    g: dict[str, np.ndarray],
    capital_per_pair: float,
    bar_h: float,
) -> dict[str, Any]:
    """The aggregates of `_simulate_block(detail=False)` for every grid point, sharing work across the grid.

    Grid points are grouped by everything but the leverage (enter, exit, max_hold, rebalance, stop). Per group,
    computed once: the never-stopped path H (rules 1-3) at unit notional, its accounting, and the event
    thresholds of `_event_threshold`. Per leverage L: events are `k >= 1 / L`, and the kill mask (rest of the
    episode after its first event) follows. A cell whose position and the one before are both alive is the
    pair's notional times the unit path (every item is linear in the units held and traded), a cell dead on
    both sides is zero, and the few cells where the path changes (event bars, the bar after a killed stretch)
    are priced exactly by the same `_leg_costs` as the full engine."""
    P, T = sig.shape
    G = len(g["enter_apr"])
    flat = {f: np.asarray(g[f], dtype=float).reshape(G) for f in GRID_FIELDS}
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
    legs = {"a": la, "b": lb}
    borrow = {name: np.where(lg.is_perp, 0.0, borrow_apr.reshape(P, 1)) for name, lg in legs.items()}
    extremes: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    # per pair: the unit path's items are products of the units of leg b (leg a holds the opposite) with these
    pair_arr = {
        "dmid": lb.dmid - la.dmid,  # basis per unit held over the bar
        "dcash": la.cash - lb.cash,  # funding received per unit: -x_a cash_a - x_b cash_b with x_a = -x_b
        "fee": la.fee_px + lb.fee_px,  # per unit traded on both legs
        "slip": la.slip_px + lb.slip_px,
        "mids": la.mid + lb.mid,
    }
    names = ["basis", "funding", "fees", "slippage", "traded_notional"]
    if (borrow["a"] > 0).any() or (borrow["b"] > 0).any():
        # a short spot leg pays borrow: leg a is short when leg b is long, and vice versa
        per_bar = bar_h / 8760.0
        pair_arr["borrow"] = (la.mid_prev * (borrow["a"] * per_bar), lb.mid_prev * (borrow["b"] * per_bar))
        names.append("borrow")
    stacked = np.empty((1 + len(names), P, T))  # the unit rows, rewritten for every group
    # pairs with the same kinds of legs carry the same notional at a given leverage (rule 3)
    pair_cls = la.is_perp[:, 0].astype(int) * 2 + lb.is_perp[:, 0].astype(int)
    classes = np.unique(pair_cls)

    def class_notional(cls: int, inv: float) -> float:
        return capital_per_pair / ((inv if cls & 2 else 1.0) + (inv if cls & 1 else 1.0))

    D_key, D, seg_key = None, None, None
    t_idx = np.arange(T, dtype=np.int32)
    for k, (enter, exit_, reb_h, stop, max_h) in enumerate(keys):
        col = lambda v: np.array([v], dtype=float).reshape(1, 1, 1)  # noqa: E731
        if D_key != (enter, exit_):  # the direction is shared by every holding limit, rebalance and stop
            D_key, D = (enter, exit_), _direction(sig, allow_reverse, reverse_cost, col(enter), col(exit_))
        sidx, H, seg = (a[0] for a in _episodes(D, _bars(col(max_h), bar_h), _bars(col(reb_h), bar_h)))
        held = H != 0
        Hp = _shift(H, 0)
        entries = int((held & (Hp != H)).sum())  # a kill never adds or removes an entry
        if seg_key != (enter, exit_, reb_h, stop):
            # entry prices at the last resize and event thresholds do not depend on the holding limit
            seg_key = (enter, exit_, reb_h, stop)
            e = {name: _gather(lg.mid, seg[None])[0] for name, lg in legs.items()}
            k_any = np.full((P, T), -np.inf)  # the largest 1 / L that an event of either leg fires at
            dc, short = {}, {}
            for n, lg in legs.items():
                if not lg.is_perp.any():
                    continue
                if (n, stop) not in extremes:
                    extremes[(n, stop)] = _adverse_extremes(lg, float(stop))
                short[n] = D[0] > 0 if n == "a" else D[0] < 0  # leg a is short when the pair is long the carry
                dc[n] = lg.cum_cash - _gather(lg.cum_cash, seg[None])[0]
                k_leg = _event_threshold(short[n], e[n], dc[n], *extremes[(n, stop)])
                k_leg[~lg.is_perp[:, 0]] = -np.inf  # spot legs are never liquidated
                np.fmax(k_any, k_leg, out=k_any)  # fmax: a NaN on one leg must not hide the other's event
        # the never-stopped path at unit notional: leg a holds -H / e_a units, leg b +H / e_a
        q_u = np.divide(1.0, e["a"], out=np.zeros((P, T)), where=held)
        xb = H * q_u  # leg b's units; leg a holds -xb
        xb_p = _shift(xb, 0.0)
        # with leg a = -leg b every item is one product with a per-pair array prepared once per block; rows
        # of `stacked` (row 0: the PnL), written in place
        traded = np.abs(xb - xb_p)  # units traded on each leg
        row = dict(zip(names, stacked[1:], strict=True))
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
        class_sums = [
            (cls, stacked.sum(axis=1) if len(classes) == 1 else stacked[:, pair_cls == cls, :].sum(axis=1))
            for cls in classes
        ]
        k_event = np.where(held, k_any, -np.inf)  # events need a position (at t-1, after the shift)
        k_event = _shift(k_event, -np.inf)  # the position of t-1 is hit at t
        # where a kill started at t would end: the next bar that is flat or starts a new episode (a kill
        # started on such a bar is empty)
        brk = ~held | (sidx == t_idx)
        end_at = np.where(brk, t_idx, np.int32(T))
        end_at = np.minimum.accumulate(end_at[:, ::-1], axis=1)[:, ::-1]
        held_t = held.sum(axis=0)
        for gi in np.flatnonzero(group_of == k):
            inv = 1.0 / flat["leverage"][gi]
            notional = capital_per_pair / (np.where(la.is_perp, inv, 1.0) + np.where(lb.is_perp, inv, 1.0))
            # the first event of each episode (rule 2): events are sparse, so work on their flat indices
            fe = np.flatnonzero(k_event >= inv)
            pe, te = np.divmod(fe, T)
            episode = pe * T + sidx.ravel()[fe - 1]  # the position of t-1's episode (te >= 1 for any event)
            first = np.ones(len(episode), dtype=bool)
            first[1:] = episode[1:] != episode[:-1]
            pe, te = pe[first], te[first]
            # killed: from the first event to the end of its episode (disjoint, sorted runs of the flattened
            # array; a run reaching the last bar ends at the next pair's first cell), written as runs: np.repeat
            # of alternating False/True is several times faster than a running sum of +1/-1 marks
            bounds = np.empty(2 * len(pe) + 2, dtype=np.int64)
            bounds[0], bounds[-1] = 0, P * T
            bounds[1:-1:2] = pe * T + te
            bounds[2:-1:2] = pe * T + end_at[pe, te]
            runs = np.zeros(2 * len(pe) + 1, dtype=bool)
            runs[1::2] = True
            killed = np.repeat(runs, np.diff(bounds)).reshape(P, T)
            killed_prev = _shift(killed, False)
            # unclean cells: killed on either side or at an event (usually a few % of the cells)
            unclean = killed | killed_prev
            at_event = np.zeros(P * T, dtype=bool)
            at_event[pe * T + te] = True
            unclean.ravel()[at_event] = True
            f = np.flatnonzero(unclean)
            p, t = np.divmod(f, T)
            n = notional[p, 0]
            per_bar = sum(class_notional(cls, inv) * sums for cls, sums in class_sums)
            removed = stacked.reshape(len(stacked), -1)[:, f] * n
            for i in range(len(stacked)):
                per_bar[i] -= np.bincount(t, weights=removed[i], minlength=T)
            out["pnl_t"][gi] += per_bar[0]
            for name, v in zip(names, per_bar[1:].sum(axis=1), strict=True):
                out["parts"][name][gi] += v
            killed_f = killed.ravel()[f]
            killed_t = np.bincount(t[killed_f], minlength=T)
            out["in_market"][gi] |= held_t > killed_t
            out["held_pair_bars"][gi] += int(held_t.sum() - killed_t.sum())
            out["entries"][gi] += entries
            # exact prices where the position differs from notional x the unit path and is not zero
            now, before, event = ~killed.ravel()[f], ~killed_prev.ravel()[f], at_event[f]
            dirty = (now ^ before) | event
            if dirty.any():
                _fix_cells(out, gi, p[dirty], t[dirty], inv, n[dirty], now[dirty], before[dirty], event[dirty],
                           legs, xb, xb_p, e, dc, short, borrow, float(stop), bar_h)  # fmt: skip
    return out


def _fix_cells(out: dict[str, Any], gi: int, p: np.ndarray, t: np.ndarray, inv: float, n: np.ndarray,
               now: np.ndarray, before: np.ndarray, event: np.ndarray, legs: dict[str, _Legs],
               xb: np.ndarray, xb_p: np.ndarray, e: dict[str, np.ndarray],
               dc: dict[str, np.ndarray], short: dict[str, np.ndarray], borrow: dict[str, np.ndarray],
               stop: float, bar_h: float) -> None:  # fmt: skip
    """Rules 4-5 on the listed cells (1-D: pair, bar, notional, alive at t and t-1, event at t), added to grid
    point gi's aggregates."""
    T = out["pnl_t"].shape[1]
    tp = np.maximum(t - 1, 0)  # an event needs an open position at t-1, so t >= 1 wherever it matters
    cells, hit = {}, {}
    for n_, lg in legs.items():
        liq = np.zeros(len(p), dtype=bool)
        stopped = np.zeros(len(p), dtype=bool)
        px = np.full(len(p), np.nan)
        if n_ in dc:
            # the liquidation price of the position of t-1 (accounting.liquidation_price, wallet / size = e / L + F)
            sh, e_p, d = short[n_][p, tp], e[n_][p, tp], dc[n_][p, tp]
            c = lg.mmr[p, 0] + lg.taker[p, 0]
            F = np.where(sh, d, -d)  # funding received per unit since the last resize
            per_unit = e_p * inv + F
            with np.errstate(invalid="ignore", divide="ignore"):
                px = np.where(sh, (e_p + per_unit) / (1.0 + c), (e_p - per_unit) / (1.0 - c))
                # classified with the same rearranged comparisons that found the event (_event_threshold)
                kb = np.where(sh, lg.high[p, t] * (1.0 + c) - e_p - F, e_p - F - lg.low[p, t] * (1.0 - c)) / e_p
                liq = event & lg.is_perp[p, 0] & (kb >= inv)
                if stop > 0:
                    ref = lg.ref[p, t]
                    ks = np.where(
                        sh, ref * (1.0 + stop) * (1.0 + c) - e_p - F, e_p - F - ref * (1.0 - stop) * (1.0 - c)
                    )
                    stopped = event & lg.is_perp[p, 0] & (ks / e_p >= inv)
        sign = -1.0 if n_ == "a" else 1.0  # leg a holds the opposite of leg b
        cells[n_] = _leg_costs(
            sign * n * xb[p, t] * now, sign * n * xb_p[p, t] * before, liq, px, lg.mid[p, t], lg.mid_prev[p, t],
            lg.cash[p, t], lg.fee[p, 0], lg.hs[p, t], lg.taker[p, 0], lg.mmr[p, 0], borrow[n_][p, 0], bar_h,
        )  # fmt: skip
        hit[n_] = (liq, stopped)
    parts = _pair_parts(cells["a"], cells["b"])
    pnl = parts["basis"] + parts["funding"] - parts["borrow"] - parts["fees"] - parts["slippage"] - parts["liquidation"]
    out["pnl_t"][gi] += np.bincount(t, weights=pnl, minlength=T)
    for name, v in parts.items():
        out["parts"][name][gi] += float(np.sum(v))
    liq_any = hit["a"][0] | hit["b"][0]
    out["liquidations"][gi] += int(liq_any.sum())
    out["stops"][gi] += int(((hit["a"][1] | hit["b"][1]) & ~liq_any).sum())


@dataclass
class BacktestResult:
    params: BacktestParams
    strategy: str
    equity: pd.DataFrame  # ts, equity, drawdown, pnl parts per bar, gross_exposure, in_market
    trades: pd.DataFrame  # one row per leg trade
    positions: pd.DataFrame  # one row per held episode (round trip)
    open_positions: pd.DataFrame  # per leg, at the last bar: what risk_report stresses
    metrics: dict[str, float]
    attribution: dict[str, float]
    arrays: dict[str, Any]


def _ts(ms: np.ndarray) -> pd.Series:
    return pd.to_datetime(pd.Series(np.asarray(ms, dtype=np.int64)), unit="ms").astype("datetime64[us]")


def run_backtest(panel: Panel, pairs: PairSet, params: BacktestParams, strategy: str = "") -> BacktestResult:
    """One full-accounting backtest with its equity curve, trades, positions and metrics."""
    grid = {f: np.array([float(getattr(params, f))]) for f in GRID_FIELDS}
    sim = simulate(panel, pairs, grid, params, detail=True)
    T, P = pairs.signal.shape
    equity = sim["equity"][0]
    metrics = {k: float(v[0]) for k, v in _metrics(sim, panel.bar_h).items()}
    metrics["liquidations"] = float(sim["liquidations"][0])
    metrics["stops"] = float(sim["stops"][0])
    eq = pd.DataFrame({"ts": _ts(panel.ts_ms), "equity": equity, "drawdown": drawdown(equity[None])[0]})
    for k, v in sim["attribution_t"].items():
        eq[f"{k}_pnl"] = v[0]
    eq["gross_exposure"] = sim["gross_exposure"][0]
    eq["in_market"] = sim["in_market"][0]
    trades = _trades(panel, pairs, sim)
    positions = _positions(panel, pairs, sim)
    open_pos = _open_positions(panel, pairs, sim, params)
    attribution = {k: float(v[0]) for k, v in sim["attribution"].items()}
    return BacktestResult(params, strategy, eq, trades, positions, open_pos, metrics, attribution, sim)


def _metrics(sim: dict[str, Any], bar_h: float) -> dict[str, np.ndarray]:
    return performance(
        sim["equity"], bar_h, sim["in_market"], sim["traded_notional"], sim["entries"], sim["held_pair_bars"]
    )


TRADE_COLUMNS = [
    "ts",
    "pair",
    "leg",
    "exchange",
    "symbol",
    "side",
    "qty",
    "price",
    "notional_usd",
    "fee_usd",
    "slippage_usd",
    "reason",
]


REASONS = np.array(["rebalance", "flip", "entry", "exit", "max_hold", "stop", "liquidation"], dtype=object)


def _trades(panel: Panel, pairs: PairSet, sim: dict[str, Any]) -> pd.DataFrame:
    """Every leg trade, vectorized: liquidation closes at the liquidation price, anything else at mid."""
    A, H, D = sim["A"][0], sim["H"][0], sim["D"][0]
    Ap = np.vstack([np.zeros((1, A.shape[1]), A.dtype), A[:-1]])
    liq_any = sim["liq_a"][0] | sim["liq_b"][0]
    # later conditions win, as in a chain of assignments
    code = np.select(
        [
            liq_any,
            sim["stopped"][0],
            (Ap != 0) & (A == 0) & (D != 0) & (H == 0),
            (Ap != 0) & (A == 0) & (D == 0),
            (Ap == 0) & (A != 0),
            (Ap != 0) & (A != 0) & (Ap != A),
        ],
        [6, 5, 4, 3, 2, 1],
        default=0,
    )
    parts: list[dict[str, np.ndarray]] = []
    for leg, x, liq, liq_px, idx in (
        ("a", sim["xa"][0], sim["liq_a"][0], sim["liq_a_px"][0], pairs.leg_a),
        ("b", sim["xb"][0], sim["liq_b"][0], sim["liq_b_px"][0], pairs.leg_b),
    ):
        xp = np.vstack([np.zeros((1, x.shape[1])), x[:-1]])
        mid = panel.mid[:, idx]
        fee, taker, hs = sim["fee_" + leg], sim["taker_" + leg], sim["hs_" + leg]
        t, p = np.nonzero(liq)
        qty = -xp[t, p]
        px = liq_px[t, p]
        parts.append(
            {
                "t": t,
                "p": p,
                "leg": np.full(len(t), leg, dtype=object),
                "qty": qty,
                "price": px,
                "fee": np.abs(qty) * px * taker[p],
                "slip": np.zeros(len(t)),
                "code": np.full(len(t), 6),
            }
        )
        dq = np.where(liq, x, x - xp)
        t, p = np.nonzero(dq != 0)
        qty = dq[t, p]
        px = mid[t, p]
        notional = np.abs(qty) * px
        parts.append(
            {
                "t": t,
                "p": p,
                "leg": np.full(len(t), leg, dtype=object),
                "qty": qty,
                "price": px,
                "fee": notional * fee[p],
                "slip": notional * hs[t, p],
                "code": np.where(liq[t, p], 2, code[t, p]),
            }
        )
    cat = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    if len(cat["t"]) == 0:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    t, p, qty, price = cat["t"], cat["p"], cat["qty"].astype(float), cat["price"].astype(float)
    idx = np.where(cat["leg"] == "a", pairs.leg_a[p], pairs.leg_b[p])
    names = np.array(pairs.names, dtype=object)
    exchanges = np.array([m.exchange for m in panel.markets], dtype=object)
    symbols = np.array([m.symbol for m in panel.markets], dtype=object)
    out = pd.DataFrame(
        {
            "ts": _ts(panel.ts_ms[t]),
            "pair": names[p],
            "leg": cat["leg"],
            "exchange": exchanges[idx],
            "symbol": symbols[idx],
            "side": np.where(qty > 0, "buy", "sell"),
            "qty": np.abs(qty),
            "price": price,
            "notional_usd": np.abs(qty) * price,
            "fee_usd": cat["fee"],
            "slippage_usd": cat["slip"],
            "reason": REASONS[cat["code"]],
        }
    )
    return out.sort_values(["ts", "pair", "leg"], kind="stable").reset_index(drop=True)


POSITION_COLUMNS = [
    "pair",
    "direction",
    "entry_ts",
    "exit_ts",
    "hours",
    "units",
    "entry_price_a",
    "entry_price_b",
    "pnl_usd",
    "funding_usd",
    "exit_reason",
]


def _positions(panel: Panel, pairs: PairSet, sim: dict[str, Any]) -> pd.DataFrame:
    """One row per episode of constant non-zero direction, vectorized over all pairs.

    The exit bar's PnL (closing costs, last funding) belongs to the episode; on a flip it also carries the new
    episode's entry costs, a small and documented overlap."""
    A = sim["A"][0].T  # (P, T)
    P, T = A.shape
    prev = np.zeros_like(A)
    prev[:, 1:] = A[:, :-1]
    p0, t0 = np.nonzero((A != 0) & (prev != A))
    if len(p0) == 0:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    change = prev != A
    change[:, 0] = True
    flat_change = np.flatnonzero(change.reshape(-1))
    row_end = np.arange(1, P + 1) * T  # sentinel: one past each row
    bounds = np.union1d(flat_change, row_end)
    f0 = p0 * T + t0
    nxt = bounds[np.searchsorted(bounds, f0, side="right")]
    t1 = np.minimum(nxt - p0 * T, T)  # first bar no longer holding this direction (T: still open)
    closed = t1 < T
    last = np.where(closed, t1, T - 1)
    cs = np.cumsum(sim["pnl"][0].T, axis=1)
    cf = np.cumsum(sim["parts"]["funding"][0].T, axis=1)

    def window_sum(c: np.ndarray) -> np.ndarray:
        return c[p0, last] - np.where(t0 > 0, c[p0, np.maximum(t0 - 1, 0)], 0.0)

    t1c = np.minimum(t1, T - 1)
    liq = (sim["liq_a"][0] | sim["liq_b"][0]).T[p0, t1c]
    stopped = sim["stopped"][0].T[p0, t1c]
    d_exit = sim["D"][0].T[p0, t1c]
    a_exit = A[p0, t1c]
    why = np.select(
        [~closed, a_exit != 0, liq, stopped, d_exit != 0],
        ["open", "flip", "liquidation", "stop", "max_hold"],
        default="exit",
    )
    exit_ms = np.where(closed, panel.ts_ms[t1c], 0)
    out = pd.DataFrame(
        {
            "pair": np.array(pairs.names, dtype=object)[p0],
            "direction": A[p0, t0].astype(int),
            "entry_ts": _ts(panel.ts_ms[t0]),
            "exit_ts": _ts(exit_ms).where(closed),
            "hours": (last - t0) * panel.bar_h,
            "units": sim["q"][0].T[p0, t0],
            "entry_price_a": sim["e_a"][0].T[p0, t0],
            "entry_price_b": sim["e_b"][0].T[p0, t0],
            "pnl_usd": window_sum(cs),
            "funding_usd": window_sum(cf),
            "exit_reason": why,
        }
    )
    return out.sort_values(["pair", "entry_ts"], kind="stable").reset_index(drop=True)


OPEN_COLUMNS = [
    "pair",
    "leg",
    "exchange",
    "symbol",
    "underlying",
    "kind",
    "units",
    "entry_price",
    "mark_price",
    "wallet_usd",
    "notional_usd",
    "mmr",
    "taker_fee",
    "leverage",
]


def _open_positions(panel: Panel, pairs: PairSet, sim: dict[str, Any], params: BacktestParams) -> pd.DataFrame:
    """Each leg open after the last bar, with its isolated wallet (initial margin + funding since the last
    resize) for the liquidation and stress maths of core/risk.py."""
    rows = []
    t = panel.shape[0] - 1
    A = sim["A"][0]
    if t < 0:
        return pd.DataFrame(columns=OPEN_COLUMNS)
    for p in np.nonzero(A[t] != 0)[0]:
        # the wallet: initial margin plus the funding booked since the segment start (as in leg_events)
        for leg, x, e, idx in (
            ("a", sim["xa"][0], sim["e_a"][0], pairs.leg_a[p]),
            ("b", sim["xb"][0], sim["e_b"][0], pairs.leg_b[p]),
        ):  # noqa: E501
            m = panel.markets[idx]
            units = float(x[t, p])
            seg_start = int(sim["seg"][0][t, p])  # the last resize (episode start or rebalance)
            funding = float(-units * panel.funding_cash[seg_start + 1 : t + 1, idx].sum())
            wallet = abs(units) * e[t, p] / params.leverage + funding if m.is_perp else abs(units) * panel.mid[t, idx]
            rows.append(
                (
                    pairs.names[p],
                    leg,
                    m.exchange,
                    m.symbol,
                    m.underlying,
                    m.kind,
                    units,
                    float(e[t, p]),
                    float(panel.ref[t, idx]),
                    wallet,
                    abs(units) * float(panel.ref[t, idx]),
                    m.mmr,
                    m.taker_fee,
                    params.leverage if m.is_perp else 1.0,
                )
            )
    return pd.DataFrame(rows, columns=OPEN_COLUMNS)


def params_dict(params: BacktestParams) -> dict[str, Any]:
    return asdict(params)


def grid_fields() -> list[str]:
    return [f.name for f in fields(BacktestParams) if f.name in GRID_FIELDS]
