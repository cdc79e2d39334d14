"""The backtest assets size by capacity when the source config's `backtest.sizing` says so: each pair's notional
at entry is the capacity of the captured books (raw_order_book) where it is below the capital share, the tables
and metadata say which bound sized each position, and the sweep sizes its points the same way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.sizing import capacity_caps
from fundarb_dagster.core.backtest.synthetic import synthetic_panel
from fundarb_dagster.defs.backtest.assets import backtest, backtest_sweep
from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource

from .warehouse_inputs import write_inputs

SHARE, HORIZON_H = 1.0, 720.0
CONFIG = {"strategy": "cash_carry", "enter_apr": 0.05, "exit_apr": 0.0, "leverage": 2.0, "capital": 2_000_000.0,
          "drawdown_stop": 0.0, "book_slippage": False}  # fmt: skip


def _books(panel) -> pd.DataFrame:
    """Both binance BTC legs: a book 30 s before every bar's close at the bar's mid, 25 k a level 1 bp apart
    (500 k a side): a 1.33 M capital share is more than any round trip within the budget can walk."""
    rows = []
    for symbol in ("BTC/USDT:USDT", "BTC/USDT"):
        j = panel.index_of("binance", symbol)
        for t, ts in enumerate(panel.ts_ms.tolist()):
            mid, at = float(panel.mid[t, j]), ts - 30_000
            bids = [mid * (1 - (k + 1) * 1e-4) for k in range(20)]
            asks = [mid * (1 + (k + 1) * 1e-4) for k in range(20)]
            rows.append({"ts": pd.Timestamp(at, unit="ms"), "ts_ms": at, "recv_ts_ms": at, "instrument_id": 0,
                         "exchange": "binance", "symbol": symbol, "updates": 1, "nonce": t, "bid_price": bids,
                         "bid_size": [25_000 / p for p in bids], "ask_price": asks,
                         "ask_size": [25_000 / p for p in asks]})  # fmt: skip
    return pd.DataFrame(rows)


def _direct(panel, books: pd.DataFrame):
    """The same run in core: capacities from the books the SQL keeps (the last of each hour), at the same rule."""
    pairs = get_strategy("cash_carry").pairs(panel, {})
    latest = books.sort_values("ts_ms").groupby([books["symbol"], books["ts_ms"] // 3_600_000]).tail(1)
    caps = capacity_caps(panel, pairs, latest, "taker", SHARE, HORIZON_H)
    params = BacktestParams(**{k: v for k, v in CONFIG.items() if k not in ("strategy", "book_slippage")},
                            sizing="capacity")  # fmt: skip
    return run_backtest(panel, replace(pairs, size_cap=caps), params)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, object, pd.DataFrame]:
    panel = synthetic_panel(24 * 6, seed=5, underlyings=("BTC",), venues=("binance",))
    folder = tmp_path_factory.mktemp("sizing")
    path = folder / "w.duckdb"
    write_inputs(panel, path)
    books = _books(panel)
    with duckdb.connect(str(path)) as conn:
        conn.register("books", books)
        conn.execute("CREATE TABLE raw_order_book AS SELECT * FROM books")
    source = folder / "config.yaml"
    source.write_text(yaml.safe_dump({"backtest": {"sizing": "capacity", "capacity_share": SHARE,
                                                   "capacity_horizon_h": HORIZON_H}}))  # fmt: skip
    resources = {"duckdb": DuckDBResource(database=str(path)), "data_dir": DataDirResource(data_dir=str(folder)),
                 "source": SourceConfigResource(config_path=str(source))}  # fmt: skip
    return path, resources, panel, books


def test_the_backtest_sizes_by_the_books_capacity_and_says_so(warehouse) -> None:
    path, resources, panel, books = warehouse
    result = materialize([backtest], resources=resources, run_config={"ops": {"backtest": {"config": CONFIG}}})
    meta = result.asset_materializations_for_node("backtest")[0].metadata
    with duckdb.connect(str(path), read_only=True) as conn:
        run = conn.execute("SELECT sizing, capital_unused_usd, final_equity_usd FROM backtest_runs").fetchone()
        sources = conn.execute("SELECT size_source, units FROM backtest_positions").df()
    assert run[0] == "capacity" and meta["sizing"].value == "capacity"
    assert len(sources) > 0 and set(sources["size_source"]) == {"capacity"}
    assert meta["size_source"].value == {"capacity": len(sources)}
    direct = _direct(panel, books)
    assert run[2] == pytest.approx(direct.equity["equity"].iloc[-1], rel=1e-12)
    assert run[1] == pytest.approx(meta["capital_unused_usd"].value) and run[1] > 0
    # each position holds the capacity at its entry, below the 1.33 M capital share
    entries = direct.positions
    assert (entries["units"] * entries["entry_price_a"] < 2_000_000 / 1.5).all()
    np.testing.assert_allclose(np.sort(sources["units"]), np.sort(entries["units"]), rtol=1e-12)


def test_the_sweep_sizes_its_points_by_capacity_as_the_backtest_does(warehouse) -> None:
    path, resources, panel, books = warehouse
    grids = {"enter_apr_grid": [0.05], "exit_apr_grid": [0.0], "max_hold_h_grid": [0.0], "leverage_grid": [2.0],
             "walk_folds": 2}  # fmt: skip
    config = {k: v for k, v in CONFIG.items() if k != "book_slippage"}  # a sweep charges the half-spread model
    result = materialize([backtest_sweep], resources=resources,
                         run_config={"ops": {"backtest_sweep": {"config": {**config, **grids}}}})  # fmt: skip
    meta = result.asset_materializations_for_node("backtest_sweep")[0].metadata
    assert meta["sizing"].value == "capacity"
    with duckdb.connect(str(path), read_only=True) as conn:
        final = conn.execute("SELECT final_equity_usd FROM backtest_sweep WHERE part = 'full'").fetchone()[0]
    direct = _direct(panel, books)
    assert (direct.positions["size_source"] == "capacity").all()
    assert final == pytest.approx(direct.equity["equity"].iloc[-1], rel=1e-12)
