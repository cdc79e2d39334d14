"""Depth and book-walk costs of captured L2 books (the `order_book` stream), as arrays: pure numpy, no venue.

A side is two (n, levels) arrays, prices best first and sizes in base units, NaN past the captured depth.
Notionals are in the quote currency (USD for the USDT/USDC markets fundarb trades).

- `depth_within(prices, sizes, mid, bps, side)`: the notional resting within `bps` of the mid on a side
  (bids at or above `mid x (1 - bps/1e4)`, asks at or below `mid x (1 + bps/1e4)`).
- `walk_cost_bps(prices, sizes, mid, notional, side)`: the VWAP of taking `notional` from a side (a buy walks
  the asks, a sell the bids), as a cost in bps of the mid: `(vwap / mid - 1) x 1e4` for a buy,
  `(1 - vwap / mid) x 1e4` for a sell (half the spread included). NaN where the captured levels hold less
  than the notional: the book as captured cannot say.

`book_depth_frame` turns `raw_order_book` rows into the `book_depth` table: per venue, symbol and minute, the
mean over the minute's snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DEPTH_BPS: tuple[int, ...] = (1, 5, 10, 25)
DEFAULT_NOTIONALS: tuple[float, ...] = (10_000.0, 100_000.0, 1_000_000.0)
SIDES = ("buy", "sell")


def mids(bid_price: np.ndarray, ask_price: np.ndarray) -> np.ndarray:
    """The mid of each book (NaN where a side is empty)."""
    return (bid_price[:, 0] + ask_price[:, 0]) / 2.0


def depth_within(prices: np.ndarray, sizes: np.ndarray, mid: np.ndarray, bps: float, side: str) -> np.ndarray:
    """The quote notional resting within `bps` of each book's mid on one side (`side` = the book side:
    "bid" or "ask")."""
    if side == "bid":
        inside = prices >= (mid * (1.0 - bps / 1e4))[:, None]
    elif side == "ask":
        inside = prices <= (mid * (1.0 + bps / 1e4))[:, None]
    else:
        raise ValueError(f"side: {side!r}; expected 'bid' or 'ask'")
    return np.where(inside & ~np.isnan(prices), prices * sizes, 0.0).sum(axis=1)


def walk_cost_bps(
    prices: np.ndarray, sizes: np.ndarray, mid: np.ndarray, notional: float | np.ndarray, side: str
) -> np.ndarray:
    """The VWAP cost in bps of the mid of taking `notional` (quote; one for every book, or one per book) from
    each book's levels, walking them best first; a "buy" walks asks, a "sell" bids. NaN where the levels hold
    less than the notional."""
    if side not in SIDES:
        raise ValueError(f"side: {side!r}; expected one of {SIDES}")
    if not np.all(np.asarray(notional) > 0):
        raise ValueError(f"notional: {notional!r} must be > 0")
    if np.ndim(notional):  # one per book: a column against the levels
        notional = np.asarray(notional, dtype=float)
        column = notional[:, None]
    else:
        column = notional
    values = np.nan_to_num(prices * sizes, nan=0.0)
    amounts = np.nan_to_num(sizes, nan=0.0)
    cum_value = np.cumsum(values, axis=1)
    cum_amount = np.cumsum(amounts, axis=1)
    # the level that completes the notional: the first whose cumulative value reaches it
    full = cum_value >= column * (1.0 - 1e-12)
    filled = full.any(axis=1)
    k = np.argmax(full, axis=1)
    rows = np.arange(len(prices))
    before_value = np.where(k > 0, cum_value[rows, np.maximum(k - 1, 0)], 0.0)
    before_amount = np.where(k > 0, cum_amount[rows, np.maximum(k - 1, 0)], 0.0)
    level_price = prices[rows, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        amount = before_amount + (notional - before_value) / level_price
        vwap = notional / amount
        cost = (vwap / mid - 1.0) if side == "buy" else (1.0 - vwap / mid)
    return np.where(filled, cost * 1e4, np.nan)


def depth_columns(bps: Sequence[int] = DEPTH_BPS) -> list[str]:
    return [f"{side}_depth_{b}bps_usd" for b in bps for side in ("bid", "ask")]


def book_depth_frame(books: pd.DataFrame, notionals: Sequence[float] = DEFAULT_NOTIONALS) -> pd.DataFrame:
    """`raw_order_book` rows (exchange, symbol, ts_ms, bid_price, bid_size, ask_price, ask_size as lists) ->
    one row per (exchange, symbol, minute, notional): snapshots, mid, spread, depth within `DEPTH_BPS` per
    side, and the buy/sell walk cost for the notional, each the mean over the minute's snapshots (a cost
    only over the snapshots deep enough for it; NaN when none was)."""
    columns = ["exchange", "symbol", "ts", "notional_usd", "snapshots", "mid", "spread_bps", *depth_columns(),
               "buy_cost_bps", "sell_cost_bps", "buy_filled_share", "sell_filled_share"]  # fmt: skip
    if books.empty:
        frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        frame[["exchange", "symbol"]] = frame[["exchange", "symbol"]].astype(object)
        frame["ts"] = frame["ts"].astype("datetime64[us]")
        frame["snapshots"] = frame["snapshots"].astype("int64")
        return frame
    levels = {name: np.stack(books[name].to_numpy()).astype(np.float64) for name in
              ("bid_price", "bid_size", "ask_price", "ask_size")}  # fmt: skip
    mid = mids(levels["bid_price"], levels["ask_price"])
    base = pd.DataFrame(
        {
            "exchange": books["exchange"].to_numpy(),
            "symbol": books["symbol"].to_numpy(),
            "ts": pd.to_datetime(books["ts_ms"].to_numpy() // 60_000 * 60_000, unit="ms"),
            "mid": mid,
            "spread_bps": (levels["ask_price"][:, 0] - levels["bid_price"][:, 0]) / mid * 1e4,
        }
    )
    for b in DEPTH_BPS:
        base[f"bid_depth_{b}bps_usd"] = depth_within(levels["bid_price"], levels["bid_size"], mid, b, "bid")
        base[f"ask_depth_{b}bps_usd"] = depth_within(levels["ask_price"], levels["ask_size"], mid, b, "ask")
    keys = ["exchange", "symbol", "ts"]
    frames = []
    for notional in notionals:
        rows = base.copy()
        rows["notional_usd"] = float(notional)
        rows["buy_cost_bps"] = walk_cost_bps(levels["ask_price"], levels["ask_size"], mid, notional, "buy")
        rows["sell_cost_bps"] = walk_cost_bps(levels["bid_price"], levels["bid_size"], mid, notional, "sell")
        rows["buy_filled_share"] = ~np.isnan(rows["buy_cost_bps"].to_numpy())
        rows["sell_filled_share"] = ~np.isnan(rows["sell_cost_bps"].to_numpy())
        frames.append(rows)
    grouped = pd.concat(frames).groupby([*keys, "notional_usd"], sort=True)
    out = grouped.mean(numeric_only=True)  # NaN costs are skipped: the mean over snapshots deep enough
    out["snapshots"] = grouped.size()
    return out.reset_index()[columns]
