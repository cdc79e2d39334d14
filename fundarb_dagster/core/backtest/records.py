"""The record tables of one backtest, built from the full simulator's per-bar arrays (engine.simulate with
detail=True, grid point 0): trades (one row per leg trade), positions (one row per held episode) and the
open book (each leg open after the last bar, what core/risk.py stresses)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .panel import Panel
from .sizing import SIZE_SOURCES
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
EXIT_REASONS = ("open", "flip", "liquidation", "stop", "drawdown", "max_hold", "exit")
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
    "size_source",
    "capital_unused_usd",
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
    return pd.Series(_us(ms))  # what pd.to_datetime(unit="ms") then .astype("datetime64[us]") give, 4x cheaper


# String columns are taken from small vocabularies (per pair, per market, per reason) by integer codes in Arrow
# (a copy of the bytes, in C) and wrapped as pandas' `str` column without another copy: no Python string per row
# (pandas building its Arrow strings from Python objects costs ~50 ns a row, Arrow decoding a dictionary and
# `Table.to_pandas` twice the take: the trade table has ~200 k rows at 1 M pair-bars).
_STR = pd.Series(["a"]).dtype  # what pandas makes of strings: `str` (pandas 3), object (pandas 2)


def _decoded(codes: np.ndarray, names: Any) -> Any:
    """names[codes] as a string column of pandas' own string dtype (`_STR`)."""
    vocabulary = pa.array([str(n) for n in names], type=pa.large_string())
    taken = vocabulary.take(pa.array(np.asarray(codes, dtype=np.int64)))
    if isinstance(_STR, pd.StringDtype):
        return pd.array(taken, dtype=_STR)
    return taken.to_numpy(zero_copy_only=False)


def _us(ms: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Epoch milliseconds as a microsecond timestamp column (NaT where not `valid`)."""
    us = np.asarray(ms, dtype=np.int64) * 1000
    if valid is not None:
        us = np.where(valid, us, np.iinfo(np.int64).min)  # numpy's NaT
    return us.view("datetime64[us]")


def name_rank(names: Any) -> np.ndarray:
    """Each name's position in sorted order: sorting the codes by rank sorts the strings."""
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.asarray([str(n) for n in names], dtype=object), kind="stable")] = np.arange(len(names))
    return rank


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
    # ordered by (ts, pair, leg), stable: a liquidation close stays before a change of the same leg and bar
    order = np.lexsort((cat["leg"], name_rank(pairs.names)[cat["p"]], cat["t"]))
    return trade_table(panel, pairs, *(cat[k][order] for k in ("t", "p", "leg", "qty", "price", "fee", "slip", "code")))


def trade_table(
    panel: Panel,
    pairs: PairSet,
    t: np.ndarray,
    p: np.ndarray,
    leg_code: np.ndarray,
    qty: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    slip: np.ndarray,
    code: np.ndarray,
) -> pd.DataFrame:
    """The trade table from its rows, already in (ts, pair, leg) order: bar, pair, leg (0 a, 1 b), signed
    quantity, price, fee, slippage and REASONS code of each (the fused simulator emits them so)."""
    if len(t) == 0:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    # Copies of the caller's float rows (views of the fused simulator's whole row buffer: a table holding them
    # would keep the buffer alive and write into it when edited); ~0.3 ms at 200 k rows.
    qty, price = np.asarray(qty, dtype=float), np.array(price, dtype=float)
    idx = np.where(leg_code == 0, pairs.leg_a[p], pairs.leg_b[p])
    size = np.abs(qty)
    return pd.DataFrame(
        {
            "ts": _us(panel.ts_ms[t]),
            "pair": _decoded(p, pairs.names),
            "leg": _decoded(leg_code, ("a", "b")),
            "exchange": _decoded(idx, [m.exchange for m in panel.markets]),
            "symbol": _decoded(idx, [m.symbol for m in panel.markets]),
            "side": _decoded((qty <= 0).astype(np.int32), ("buy", "sell")),
            "qty": size,
            "price": price,
            "notional_usd": size * price,
            "fee_usd": np.array(fee, dtype=float),
            "slippage_usd": np.array(slip, dtype=float),
            "reason": _decoded(code, REASONS),
        },
        copy=False,  # the columns are the frame's own: not gathered again into one float block (~2 ms at 200 k rows)
    )


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
        "leg": np.full(len(t), "ab".index(leg)),
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
        "leg": np.full(len(t), "ab".index(leg)),
        "qty": qty,
        "price": px,
        "fee": notional * fee[t, p],
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
    # both are sorted: a stable merge, not union1d's hash (a repeated bound does not change searchsorted's answer)
    bounds = np.sort(np.concatenate([flat_change, row_end]), kind="stable")
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
        [~closed, a_exit != 0, liq, stopped, t1 == sim["halt"][0], d_exit != 0], [0, 1, 2, 3, 4, 5], default=6
    )
    src, unused = sizes(sim, p0, t0)
    return position_table(panel, pairs, p0, t0, np.where(closed, t1c, -1), last, A[p0, t0], sim["q"][0].T[p0, t0],
                          sim["e_a"][0].T[p0, t0], sim["e_b"][0].T[p0, t0], window_sum(cs), window_sum(cf), why, src,
                          unused)  # fmt: skip


def position_table(
    panel: Panel,
    pairs: PairSet,
    p0: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    last: np.ndarray,
    direction: np.ndarray,
    units: np.ndarray,
    entry_a: np.ndarray,
    entry_b: np.ndarray,
    pnl: np.ndarray,
    funding: np.ndarray,
    why: np.ndarray,
    size_source: np.ndarray,
    unused: np.ndarray,
) -> pd.DataFrame:
    """The position table from one row per position in any order: pair, entry bar, exit bar (-1: still open),
    last bar counted, direction, units, entry prices, PnL, funding, EXIT_REASONS code, sizing.SIZE_SOURCES code
    and capital left unused. Sorted by (pair, entry_ts)."""
    if len(p0) == 0:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    # by (pair, entry_ts): numbers sorted, strings built sorted
    order = _by_pair_entry(name_rank(pairs.names)[p0], np.asarray(t0, dtype=np.int64), len(panel.ts_ms))
    p0, t0, t1, last, direction, units, entry_a, entry_b, pnl, funding, why, size_source, unused = (
        np.asarray(c)[order]
        for c in (p0, t0, t1, last, direction, units, entry_a, entry_b, pnl, funding, why, size_source, unused)
    )
    closed = t1 >= 0
    return pd.DataFrame(
        {
            "pair": _decoded(p0, pairs.names),
            "direction": np.asarray(direction).astype(int),
            "entry_ts": _us(panel.ts_ms[t0]),
            "exit_ts": _us(np.where(closed, panel.ts_ms[np.maximum(t1, 0)], 0), closed),
            "hours": (last - t0) * panel.bar_h,
            "units": units,
            "entry_price_a": entry_a,
            "entry_price_b": entry_b,
            "pnl_usd": pnl,
            "funding_usd": funding,
            "exit_reason": _decoded(why, EXIT_REASONS),
            "size_source": _decoded(size_source, SIZE_SOURCES),
            "capital_unused_usd": unused,
        },
        copy=False,  # every column is new here
    )


def _by_pair_entry(rank: np.ndarray, t0: np.ndarray, T: int) -> np.ndarray:
    """The order of positions by (pair rank, entry bar). Both simulators emit each pair's positions in entry order
    (the fused one as they close, then those still open; records.positions pair by pair): then a stable sort on the
    rank alone gives it, a radix sort on 16 bits (~3x cheaper than a sort on one combined key). Otherwise, or with
    more than 32,766 pairs (ranks as int16), the combined key (unique: a pair enters at most once a bar)."""
    if len(rank) and rank.max() < np.iinfo(np.int16).max:
        order = np.argsort(rank.astype(np.int16), kind="stable")
        r, t = rank[order], t0[order]
        if bool(np.all((r[1:] != r[:-1]) | (t[1:] > t[:-1]))):
            return order
    return np.argsort(rank * (T + 1) + t0)


def sizes(sim: dict[str, Any], p0: np.ndarray, t0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position entered at (pair p0, bar t0): which bound sized it (`sizing.SIZE_SOURCES` code) and the capital
    its pair's share left unused; the even split (and none unused) without sizing by capacity."""
    if "size_src" not in sim:
        return np.zeros(len(p0), dtype=np.int8), np.zeros(len(p0))
    return sim["size_src"][0].T[p0, t0], sim["unused"][0].T[p0, t0]


def capital_unused(sim: dict[str, Any]) -> float:
    """The capital the sizing left unused, mean over the bars in market: per bar, the held pairs' capital shares
    less the margin their notionals need (0 under the even split)."""
    if "unused" not in sim:
        return 0.0
    held = sim["A"][0] != 0  # (T, P)
    in_market = held.any(axis=1)
    if not in_market.any():
        return 0.0
    return float(np.where(held, sim["unused"][0], 0.0).sum(axis=1)[in_market].mean())


def open_positions(panel: Panel, pairs: PairSet, sim: dict[str, Any], leverage: float) -> pd.DataFrame:
    """Each leg open after the last bar, with its isolated wallet (initial margin + funding since the last
    resize) for the liquidation and stress maths of core/risk.py. Entry prices (`e_a`, `e_b`) and resize bars
    (`seg`) are read at their last row: the fused simulator keeps only that one."""
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
            seg_start = int(sim["seg"][0][-1, p])  # the last resize (episode start or rebalance)
            funding = float(-units * panel.funding_cash[seg_start + 1 : t + 1, idx].sum())
            wallet = abs(units) * e[-1, p] / leverage + funding if m.is_perp else abs(units) * panel.mid[t, idx]
            rows.append(
                (
                    pairs.names[p],
                    leg,
                    m.exchange,
                    m.symbol,
                    m.underlying,
                    m.kind,
                    units,
                    float(e[-1, p]),
                    float(panel.ref[t, idx]),
                    wallet,
                    abs(units) * float(panel.ref[t, idx]),
                    m.mmr,
                    m.taker_fee,
                    leverage if m.is_perp else 1.0,
                )
            )
    return pd.DataFrame(rows, columns=OPEN_COLUMNS)
