"""The backtest asset walks the captured books (raw_order_book) for its legs' size: its slippage equals the core
engine's on the walked panel, the metadata says how many bars were walked, and without books it is the model's."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.book_costs import leg_notionals, with_book_slippage
from fundarb_dagster.core.backtest.synthetic import synthetic_panel
from fundarb_dagster.defs.backtest.assets import backtest

from .test_assets import resources
from .warehouse_inputs import write_inputs

CONFIG = {"strategy": "cash_carry", "enter_apr": 0.05, "exit_apr": 0.0, "leverage": 2.0, "capital": 500_000.0,
          "drawdown_stop": 0.0}  # fmt: skip


def _books(panel) -> pd.DataFrame:
    """binance BTC perp: every bar a book 30 s before its close and one 10 min before (the later one is walked),
    mid at the bar's mid, 25 k a level on each side 1 bp apart: a 333 k leg walks well past the top."""
    j = panel.index_of("binance", "BTC/USDT:USDT")
    rows = []
    for t, ts in enumerate(panel.ts_ms.tolist()):
        mid = float(panel.mid[t, j])
        for age in (600_000, 30_000):
            bids = [mid * (1 - (k + 1) * 1e-4) for k in range(20)]
            asks = [mid * (1 + (k + 1) * 1e-4) for k in range(20)]
            rows.append({"ts": pd.Timestamp(ts - age, unit="ms"), "ts_ms": ts - age, "recv_ts_ms": ts - age,
                         "instrument_id": 0, "exchange": "binance", "symbol": "BTC/USDT:USDT", "updates": 1,
                         "nonce": t, "bid_price": bids, "bid_size": [25_000 / p for p in bids], "ask_price": asks,
                         "ask_size": [25_000 / p for p in asks]})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, pd.DataFrame]:
    panel = synthetic_panel(24 * 6, seed=5, underlyings=("BTC",), venues=("binance",))
    path = tmp_path_factory.mktemp("books") / "w.duckdb"
    write_inputs(panel, path)
    books = _books(panel)
    with duckdb.connect(str(path)) as conn:
        conn.register("books", books)
        conn.execute("CREATE TABLE raw_order_book AS SELECT * FROM books")
    return path, panel, books


def test_the_asset_charges_the_walked_cost_where_books_were_captured(warehouse) -> None:
    path, panel, books = warehouse
    result = materialize([backtest], resources=resources(path), run_config={"ops": {"backtest": {"config": CONFIG}}})
    meta = result.asset_materializations_for_node("backtest")[0].metadata
    sources = meta["slippage_source"].value
    assert sources["binance BTC/USDT:USDT"] == f"book {len(panel.ts_ms)}/{len(panel.ts_ms)} bars"
    assert sources["binance BTC/USDT"] == f"book 0/{len(panel.ts_ms)} bars"
    params = BacktestParams(**{k: v for k, v in CONFIG.items() if k != "strategy"})
    pairs = get_strategy("cash_carry").pairs(panel, {})
    latest = books.sort_values("ts_ms").groupby(pd.Series(books["ts_ms"] // 3_600_000)).tail(1)  # as the SQL keeps
    walked, _ = with_book_slippage(panel, latest, leg_notionals(panel, pairs, params))
    direct = run_backtest(walked, pairs, params)
    flat = run_backtest(panel, pairs, params)
    with duckdb.connect(str(path), read_only=True) as conn:
        slip = conn.execute("SELECT slippage_usd FROM backtest_trades WHERE run_id = $r", {"r": result.run_id}).df()
    assert slip["slippage_usd"].sum() == pytest.approx(direct.attribution["slippage"], rel=1e-9)
    # the perp leg (333 k at leverage 2) walks ~14 levels: dearer than its quoted half-spread
    assert direct.attribution["slippage"] > 1.5 * flat.attribution["slippage"]
    np.testing.assert_allclose(walked.half_spread[:, 1], panel.half_spread[:, 1])  # the spot had no book
