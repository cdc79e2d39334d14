"""The backtest's trade and position tables built the obvious way (object arrays of strings, pandas sorts):
the implementation records.py had before it built the tables through Arrow, kept as the reference the fast
tables are compared with."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fundarb_dagster.core.backtest.panel import Panel
from fundarb_dagster.core.backtest.records import POSITION_COLUMNS, REASONS, TRADE_COLUMNS, _reason_codes
from fundarb_dagster.core.backtest.strategies import PairSet


def timestamps(ms: np.ndarray) -> pd.Series:
    """Epoch milliseconds -> naive UTC microsecond timestamps, through pandas (not records' own conversion)."""
    return pd.Series(pd.to_datetime(np.asarray(ms), unit="ms").astype("datetime64[us]"))


def reference_trades(panel: Panel, pairs: PairSet, sim: dict[str, Any]) -> pd.DataFrame:
    """Every leg trade, vectorized: liquidation closes at the liquidation price, anything else at mid."""
    code = _reason_codes(sim)
    parts: list[dict[str, np.ndarray]] = []
    for leg, x, liq, liq_px, idx in (
        ("a", sim["xa"][0], sim["liq_a"][0], sim["liq_a_px"][0], pairs.leg_a),
        ("b", sim["xb"][0], sim["liq_b"][0], sim["liq_b_px"][0], pairs.leg_b),
    ):
        parts += _object_leg_trades(leg, x, liq, liq_px, panel.mid[:, idx], sim, code)
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


def _object_leg_trades(
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
        "fee": notional * fee[t, p],  # (T, P): dated fees vary by bar
        "slip": notional * hs[t, p],
        "code": np.where(liq[t, p], 2, code[t, p]),
    }
    return [closes, changes]


def reference_positions(panel: Panel, pairs: PairSet, sim: dict[str, Any]) -> pd.DataFrame:
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
            # what sized it: even without capacity caps, else the engine's code at the entry
            "size_source": (
                np.array(["even", "capital", "capacity"], dtype=object)[sim["size_src"][0].T[p0, t0]]
                if "size_src" in sim
                else np.full(len(p0), "even", dtype=object)
            ),
            "capital_unused_usd": sim["unused"][0].T[p0, t0] if "unused" in sim else np.zeros(len(p0)),
        }
    )
    return out.sort_values(["pair", "entry_ts"], kind="stable").reset_index(drop=True)
