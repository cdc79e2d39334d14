"""The set-up both block simulators share: the legs' arrays, a block of pairs, rules 1-3 and rule 4's costs.

The rules are those of engine.py. Arrays are time-last, `(G, P, T)` (grid points x pairs x bars), and pairs
are processed in blocks (engine.simulate cuts them): every pass then runs over contiguous, cache-sized memory
(accumulations along time are contiguous too). What lives here is computed the same way by the full
simulator (full_block.py) and the grid-sharing one (grid_block.py), so they can only differ where they mean
to: how they visit the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..units import HOURS_PER_YEAR
from .accounting import half_spread_or_model
from .panel import Panel
from .strategies import PairSet

# Pairs per block of the full simulator: about this many (grid x pair x bar) cells.
BLOCK_CELLS = 70_000
PARTS = ("basis", "funding", "borrow", "fees", "slippage", "liquidation")


# -- small array helpers (time is the last axis) ------------------------------------------------------------
def shift(a: np.ndarray, fill: Any) -> np.ndarray:
    """One bar later along the last (time) axis, `fill` at the first bar."""
    out = np.empty_like(a)
    out[..., 0] = fill
    out[..., 1:] = a[..., :-1]
    return out


def last_index(mask: np.ndarray) -> np.ndarray:
    """Index of the last True at or before each t along the last axis (-1 where none)."""
    # arithmetic instead of np.where (several times faster on large arrays): t where True, -1 elsewhere;
    # int32 when it fits: half the memory traffic of int64 in these passes
    dtype = np.int32 if mask.shape[-1] < 2**31 - 1 else np.int64
    idx = np.multiply(mask, np.arange(1, mask.shape[-1] + 1, dtype=dtype), dtype=dtype)
    idx -= 1
    np.maximum.accumulate(idx, axis=-1, out=idx)
    return idx


def gather(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
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


# -- the legs ------------------------------------------------------------------------------------------------
@dataclass
class Legs:
    """One leg of every pair, time-last `(P, T)`; per-pair constants as `(P, 1)` columns."""

    mid: np.ndarray  # NaN (not listed yet) as 0: never held there, so 0 x 0
    mid_prev: np.ndarray  # mid of the bar before (bar 0: its own)
    ref: np.ndarray
    high: np.ndarray
    low: np.ndarray
    cash: np.ndarray
    hs: np.ndarray
    is_perp: np.ndarray
    fee: np.ndarray  # execution fee, (P, 1) or (P, T) with dated fees
    taker: np.ndarray
    mmr: np.ndarray
    # derived once per panel for the grid-sharing path (they depend on no parameter)
    cum_cash: np.ndarray  # cumulative funding cash along time
    dmid: np.ndarray  # mid - mid_prev
    fee_px: np.ndarray  # fee per unit traded: mid x fee
    slip_px: np.ndarray  # slippage per unit traded: mid x half-spread
    tiers: list[np.ndarray | None]  # per pair: the leg's leverage tiers (`Panel.tiers`), None: the flat mmr

    def block(self, sl: slice) -> Legs:
        return Legs(**{name: getattr(self, name)[sl] for name in self.__dataclass_fields__})


def _legs(panel: Panel, by_market: dict[str, np.ndarray], idx: np.ndarray, execution: str) -> Legs:
    """One leg's arrays: rows `idx` of the panel's time-last arrays (`by_market`, transposed once for both
    legs: gathering whole contiguous rows is a memcpy, gathering columns then transposing is not)."""
    markets = [panel.markets[i] for i in idx]

    def col(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(-1, 1)

    def rows(name: str) -> np.ndarray:
        return by_market[name][idx]

    taker = col([m.taker_fee for m in markets])  # the liquidation fee: the market's own, whatever the date
    mid = rows("mid")
    mid_prev = np.concatenate([mid[:, :1], mid[:, :-1]], axis=1)
    cash = rows("funding_cash")
    hs = rows("half_spread") if execution == "taker" else np.zeros_like(mid)
    fee = taker if execution == "taker" else col([m.maker_fee for m in markets])
    if f"{execution}_fee_t" in by_market:  # dated fees: each trade pays the fee in force at its bar
        fee = rows(f"{execution}_fee_t")
    return Legs(
        mid=mid,
        mid_prev=mid_prev,
        ref=rows("ref"),
        high=rows("ref_high"),
        low=rows("ref_low"),
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
        tiers=[panel.tiers.get(int(i)) for i in idx],
    )


def legs_of(panel: Panel, pairs: PairSet, execution: str, slippage_bps: float) -> tuple[Legs, Legs]:
    """Both legs' arrays gathered from the panel (engine.prepare_legs: once per backtest or sweep)."""
    by_market = {
        "mid": np.nan_to_num(np.ascontiguousarray(panel.mid.T), nan=0.0),  # a copy: never the panel itself
        "ref": np.ascontiguousarray(panel.ref.T),
        "ref_high": np.ascontiguousarray(panel.ref_high.T),
        "ref_low": np.ascontiguousarray(panel.ref_low.T),
        "funding_cash": np.ascontiguousarray(panel.funding_cash.T),
        "half_spread": np.ascontiguousarray(half_spread_or_model(panel.half_spread, slippage_bps).T),
    }
    for name in ("taker_fee_t", "maker_fee_t"):
        if getattr(panel, name) is not None:
            by_market[name] = np.ascontiguousarray(getattr(panel, name).T)
    return _legs(panel, by_market, pairs.leg_a, execution), _legs(panel, by_market, pairs.leg_b, execution)


def block_step(T: int, cells: int = BLOCK_CELLS) -> int:
    """Pairs per block of about `cells` (grid x pair x bar) cells at T bars (engine._run_blocks cuts the pairs so;
    the fused simulator adds its per-bar sums over pairs in the same blocks, so they equal the engine's)."""
    return max(1, cells // max(T, 1))


def bars(hours: np.ndarray, bar_h: float) -> np.ndarray:
    """Hours -> whole bars (rounded up; 0 stays 0: no limit / never)."""
    return np.where(hours > 0, np.ceil(hours / bar_h - 1e-9), 0).astype(np.int64)


def direction(
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
    rshift = reverse_cost.reshape(1, P, -1)  # (P,) or time-last (P, T)
    neg = hysteresis(np.broadcast_to(rev & (s <= -(enter + rshift)), shape), (s >= -(exit_ + rshift)) | nan)
    return pos.astype(np.int8) - neg.astype(np.int8)


def episodes(D: np.ndarray, max_bars: np.ndarray, reb_bars: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule 2 and the resize bars of rule 3: episode start index sidx (-1 before the first), direction H after
    the holding limit, and seg, the bar of the last resize (episode start or rebalance). All `(G, P, T)`."""
    T = D.shape[-1]
    start = (D != 0) & (shift(D, 0) != D)
    sidx = last_index(start)
    age = np.arange(T).reshape(1, 1, T) - sidx
    H = D * ((max_bars <= 0) | (age < max_bars))
    seg = sidx + (age // np.maximum(reb_bars, 1)) * reb_bars  # reb_bars 0: the episode start
    np.clip(seg, 0, None, out=seg)
    return sidx, H, seg


@dataclass
class Block:
    """One block of pairs (`(P, T)` rows) and what both simulators take from it before any grid point."""

    sig: np.ndarray  # the pairs' signals, time-last
    la: Legs
    lb: Legs
    allow_reverse: np.ndarray  # (P,)
    reverse_cost: np.ndarray  # (P,) or time-last (P, T)
    borrow_a: np.ndarray  # (P, 1) or (P, T) borrow APR on leg a when it is a short spot leg (0 on a perp)
    borrow_b: np.ndarray
    capital_per_pair: float
    bar_h: float
    units: float = 0.0  # > 0: every held pair holds this many units per leg (rule 3's fixed size)
    cap: np.ndarray | None = None  # (P, T) sizing by capacity: the notional per leg the books carry (NaN: none)

    @classmethod
    def of(
        cls,
        signal: np.ndarray,
        legs: tuple[Legs, Legs],
        pairs: PairSet,
        sl: slice,
        capital_per_pair: float,
        bar_h: float,
        units: float = 0.0,
        cap: np.ndarray | None = None,
    ) -> Block:
        """Pairs `sl` of the time-last `signal` `(P, T)` and of both legs (`legs_of`); `cap` the pairs' capacities
        `(T, P)` (sizing by capacity) or None."""
        la, lb = legs[0].block(sl), legs[1].block(sl)
        borrow = pairs.borrow_apr[:, sl].T if pairs.borrow_apr.ndim == 2 else pairs.borrow_apr[sl].reshape(-1, 1)
        reverse = pairs.reverse_cost_apr
        return cls(
            sig=signal[sl],
            la=la,
            lb=lb,
            allow_reverse=pairs.allow_reverse[sl],
            reverse_cost=np.ascontiguousarray(reverse[:, sl].T) if reverse.ndim == 2 else reverse[sl],
            borrow_a=np.ascontiguousarray(np.where(la.is_perp, 0.0, borrow)),
            borrow_b=np.ascontiguousarray(np.where(lb.is_perp, 0.0, borrow)),
            capital_per_pair=capital_per_pair,
            bar_h=bar_h,
            units=units,
            cap=None if cap is None else np.ascontiguousarray(cap[:, sl].T),
        )

    def direction(self, enter: np.ndarray, exit_: np.ndarray) -> np.ndarray:
        """Rule 1 for thresholds shaped `(G, 1, 1)`: D `(G, P, T)`."""
        return direction(self.sig, self.allow_reverse, self.reverse_cost, enter, exit_)

    def episodes(
        self, D: np.ndarray, max_hold_h: np.ndarray, rebalance_h: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rule 2 and rule 3's resize bars for limits in hours shaped `(G, 1, 1)`: sidx, H, seg."""
        return episodes(D, bars(max_hold_h, self.bar_h), bars(rebalance_h, self.bar_h))

    def notional(self, inv_leverage: Any) -> np.ndarray:
        """Rule 3: each pair's notional, its capital share over (spot legs + perp legs / leverage)."""
        cost_a = np.where(self.la.is_perp, inv_leverage, 1.0)
        cost_b = np.where(self.lb.is_perp, inv_leverage, 1.0)
        return self.capital_per_pair / (cost_a + cost_b)

    def sized(self, even: np.ndarray, sidx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Rule 3 under sizing by capacity: the even notional `(G, P, 1)` capped at the pair's capacity at its
        episode's entry `sidx` `(G, P, T)`, and which bound sized it (`sizing.SIZE_SOURCES` codes: 0 even, no
        book; 1 capital; 2 capacity). Without caps: the even notional and None."""
        if self.cap is None:
            return even, None
        cap = gather(self.cap, np.maximum(sidx, 0))  # before the first episode: never held
        src = np.where(np.isnan(cap), 0, np.where(cap < even, 2, 1)).astype(np.int8)
        return np.fmin(even, cap), src


# -- rule 4: the accounting of a leg ---------------------------------------------------------------------------
def leg_costs(
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
        out["borrow"] = np.maximum(-x_prev, 0.0) * mid_prev * (borrow * bar_h / HOURS_PER_YEAR)
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
        out["liquidation_fee"] = liq_notional * taker  # within "fees"; rule 6 marks it before the bar's trades
        out["traded_notional"] = at_mid + liq_notional
    return out


def pair_parts(pa_: dict[str, np.ndarray], pb_: dict[str, np.ndarray]) -> dict[str, Any]:
    """Both legs' items added; a part neither leg has (no borrow, no liquidation) is the scalar 0."""
    parts: dict[str, Any] = {}
    for k in (*PARTS, "traded_notional"):
        if k in pa_ and k in pb_:
            parts[k] = pa_[k] + pb_[k]
        else:
            parts[k] = pa_.get(k, pb_.get(k, 0.0))
    return parts


def pair_mark(pa_: dict[str, np.ndarray], pb_: dict[str, np.ndarray], parts: dict[str, Any]) -> Any:
    """Rule 6's marked PnL: the bar's items before the trades decided at it (basis, funding, borrow, and a
    liquidation's loss and fee), i.e. the PnL less the fees and slippage of the trades at mid."""
    mark = parts["basis"] + parts["funding"] - parts["borrow"] - parts["liquidation"]
    for legs in (pa_, pb_):
        if "liquidation_fee" in legs:
            mark = mark - legs["liquidation_fee"]
    return mark


def pair_pnl(parts: dict[str, Any]) -> Any:
    """The PnL of rule 4's items: basis and funding earned, the costs paid."""
    return (
        parts["basis"] + parts["funding"] - parts["borrow"] - parts["fees"] - parts["slippage"] - parts["liquidation"]
    )
