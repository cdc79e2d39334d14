"""The record tables of one backtest, built from the full simulator's per-bar arrays (engine.simulate with
detail=True, grid point 0): trades (one row per leg trade), positions (one row per held episode) and the
open book (each leg open after the last bar, what core/risk.py stresses)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .panel import Panel
from .strategies import PairSet

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
REASONS = np.array(["rebalance", "flip", "entry", "exit", "max_hold", "stop", "liquidation", "drawdown"], dtype=object)
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


def timestamps(ms: np.ndarray) -> pd.Series:
    """Epoch milliseconds -> naive UTC timestamps (microseconds, as the warehouse stores them)."""
    return pd.to_datetime(pd.Series(np.asarray(ms, dtype=np.int64)), unit="ms").astype("datetime64[us]")


def trades(panel: Panel, pairs: PairSet, sim: dict[str, Any]) -> pd.DataFrame:
    """Every leg trade, vectorized: liquidation closes at the liquidation price, anything else at mid."""
    code = _reason_codes(sim)
    parts: list[dict[str, np.ndarray]] = []
    for leg, x, liq, liq_px, idx in (
        ("a", sim["xa"][0], sim["liq_a"][0], sim["liq_a_px"][0], pairs.leg_a),
        ("b", sim["xb"][0], sim["liq_b"][0], sim["liq_b_px"][0], pairs.leg_b),
    ):
        parts += _leg_trades(leg, x, liq, liq_px, panel.mid[:, idx], sim, code)
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
            "ts": timestamps(panel.ts_ms[t]),
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


def _reason_codes(sim: dict[str, Any]) -> np.ndarray:
    """Per bar and pair `(T, P)`, the index in REASONS of why the position changed there."""
    A, H, D = sim["A"][0], sim["H"][0], sim["D"][0]
    Ap = np.vstack([np.zeros((1, A.shape[1]), A.dtype), A[:-1]])
    liq_any = sim["liq_a"][0] | sim["liq_b"][0]
    at_halt = (np.arange(A.shape[0]) == sim["halt"][0])[:, None]  # rule 6's bar
    # the first condition that holds wins
    return np.select(
        [
            liq_any,
            sim["stopped"][0],
            (Ap != 0) & (A == 0) & at_halt,
            (Ap != 0) & (A == 0) & (D != 0) & (H == 0),
            (Ap != 0) & (A == 0) & (D == 0),
            (Ap == 0) & (A != 0),
            (Ap != 0) & (A != 0) & (Ap != A),
        ],
        [6, 5, 7, 4, 3, 2, 1],
        default=0,
    )


def _leg_trades(
    leg: str,
    x: np.ndarray,
    liq: np.ndarray,
    liq_px: np.ndarray,
    mid: np.ndarray,
    sim: dict[str, Any],
    code: np.ndarray,
) -> list[dict[str, np.ndarray]]:
    """One leg's trades `(T, P)` as columns: its liquidation closes, then every other change of its units."""
    xp = np.vstack([np.zeros((1, x.shape[1])), x[:-1]])
    fee, taker, hs = sim["fee_" + leg], sim["taker_" + leg], sim["hs_" + leg]
    t, p = np.nonzero(liq)
    qty = -xp[t, p]
    px = liq_px[t, p]
    closes = {
        "t": t,
        "p": p,
        "leg": np.full(len(t), leg, dtype=object),
        "qty": qty,
        "price": px,
        "fee": np.abs(qty) * px * taker[p],
        "slip": np.zeros(len(t)),
        "code": np.full(len(t), 6),
    }
    dq = np.where(liq, x, x - xp)
    t, p = np.nonzero(dq != 0)
    qty = dq[t, p]
    px = mid[t, p]
    notional = np.abs(qty) * px
    changes = {
        "t": t,
        "p": p,
        "leg": np.full(len(t), leg, dtype=object),
        "qty": qty,
        "price": px,
        "fee": notional * fee[p],
        "slip": notional * hs[t, p],
        "code": np.where(liq[t, p], 2, code[t, p]),
    }
    return [closes, changes]


def positions(panel: Panel, pairs: PairSet, sim: dict[str, Any]) -> pd.DataFrame:
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
        [~closed, a_exit != 0, liq, stopped, t1 == sim["halt"][0], d_exit != 0],
        ["open", "flip", "liquidation", "stop", "drawdown", "max_hold"],
        default="exit",
    )
    exit_ms = np.where(closed, panel.ts_ms[t1c], 0)
    out = pd.DataFrame(
        {
            "pair": np.array(pairs.names, dtype=object)[p0],
            "direction": A[p0, t0].astype(int),
            "entry_ts": timestamps(panel.ts_ms[t0]),
            "exit_ts": timestamps(exit_ms).where(closed),
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


def open_positions(panel: Panel, pairs: PairSet, sim: dict[str, Any], leverage: float) -> pd.DataFrame:
    """Each leg open after the last bar, with its isolated wallet (initial margin + funding since the last
    resize) for the liquidation and stress maths of core/risk.py."""
    rows = []
    t = panel.shape[0] - 1
    A = sim["A"][0]
    if t < 0:
        return pd.DataFrame(columns=OPEN_COLUMNS)
    for p in np.nonzero(A[t] != 0)[0]:
        # the wallet: initial margin plus the funding booked since the segment start (as in rule 5's check)
        for leg, x, e, idx in (
            ("a", sim["xa"][0], sim["e_a"][0], pairs.leg_a[p]),
            ("b", sim["xb"][0], sim["e_b"][0], pairs.leg_b[p]),
        ):
            m = panel.markets[idx]
            units = float(x[t, p])
            seg_start = int(sim["seg"][0][t, p])  # the last resize (episode start or rebalance)
            funding = float(-units * panel.funding_cash[seg_start + 1 : t + 1, idx].sum())
            wallet = abs(units) * e[t, p] / leverage + funding if m.is_perp else abs(units) * panel.mid[t, idx]
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
                    leverage if m.is_perp else 1.0,
                )
            )
    return pd.DataFrame(rows, columns=OPEN_COLUMNS)
