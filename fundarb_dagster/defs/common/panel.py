"""The backtest's panel read from the warehouse (read-only): the backtest assets run strategies on it, the
execution domain runs the live trader's parameters on it to compare (`live_pnl`)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ...core.backtest import Panel
from ...core.backtest.panel import panel_from_tables
from ...core.sql import execute, load_sql, table_exists

DOMAIN = "backtest"  # the panel's queries live in sql/backtest/
INPUT_TABLES = [
    "ohlcv_1h",
    "ohlcv_8h",
    "basis",
    "funding_rates",
    "funding_predictions",
    "funding_intervals",
    "instruments",
    "borrow_rates",
    "raw_order_book",
    "leverage_tiers",
]
LOOKBACK = timedelta(days=7)  # settled/predicted rates before the window seed the first expectations


def _query(conn: Any, name: str, params: dict[str, Any], *needs: str) -> pd.DataFrame:
    if not all(table_exists(conn, t) for t in needs):
        return pd.DataFrame()
    return execute(conn, load_sql(DOMAIN, name), params).df()


def load_panel(
    conn: Any,
    start: datetime,
    end: datetime,
    markets: Collection[tuple[str, str]] | None = None,
    fee_overrides: dict[str, dict[str, float]] | None = None,
) -> Panel:
    """Read the panel's inputs (read-only) and assemble it (core/backtest/panel.panel_from_tables); `markets`
    keeps only those (exchange, symbol) (None: every market in the window); `fee_overrides` per venue
    (`taker_fee`, `maker_fee` as fractions) replace the venues' own fees."""
    params = {"start": start, "end": end, "lookback": start - LOOKBACK}
    frames = {
        "bars": _bars(conn, params),
        "quotes": _query(conn, "panel_quotes", params, "basis"),
        "settlements": _query(conn, "panel_settlements", params, "funding_rates"),
        "predictions": _query(conn, "panel_predictions", params, "funding_predictions"),
        "intervals": _query(conn, "panel_intervals", params, "funding_intervals"),
        "instruments": _query(conn, "panel_instruments", params, "instruments"),
    }
    if markets is not None:
        wanted = set(markets)
        frames = {k: _only(f, wanted) for k, f in frames.items()}
    return panel_from_tables(**frames, fee_overrides=fee_overrides)


def load_books(conn: Any, start: datetime, end: datetime) -> pd.DataFrame:
    """The last captured book of each hour per instrument around the window (empty without `raw_order_book`):
    what `core.backtest.book_costs` walks."""
    return _query(conn, "panel_books", {"start": start, "end": end}, "raw_order_book")


def load_tiers(conn: Any, end: datetime) -> pd.DataFrame:
    """Each perp's leverage tiers for a backtest ending at `end` (empty without a `leverage_tiers` table)."""
    return _query(conn, "panel_tiers", {"end": end}, "leverage_tiers")


def load_borrow_rates(conn: Any, end: datetime) -> pd.DataFrame:
    """The captured spot borrow rates published before `end` (empty without a `borrow_rates` table): the
    `borrow_rates` option of the cash_carry strategy."""
    return _query(conn, "panel_borrow", {"end": end}, "borrow_rates")


def _bars(conn: Any, params: dict[str, Any]) -> pd.DataFrame:
    """Hourly bars, and 8-hour bars where an instrument has no hourly ones (history imported as 8h klines)."""
    frames = [
        _query(conn, "panel_bars", params, "ohlcv_1h"),
        _query(conn, "panel_bars_8h", params, "ohlcv_1h", "ohlcv_8h"),
    ]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _only(frame: pd.DataFrame, wanted: set[tuple[str, str]]) -> pd.DataFrame:
    if frame.empty or "exchange" not in frame or "symbol" not in frame:
        return frame
    keep = [(e, s) in wanted for e, s in zip(frame["exchange"], frame["symbol"], strict=True)]
    return frame[keep].reset_index(drop=True)
