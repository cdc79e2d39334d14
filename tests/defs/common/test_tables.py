"""defs/common: tables created and written by name on a real DuckDB file, with the columns of core/tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from fundarb_dagster.core.tables import FUNDING, RAW_TABLES, TABLES
from fundarb_dagster.core.window import Window
from fundarb_dagster.defs.common.landing import ensure_raw_tables
from fundarb_dagster.defs.common.metadata import md_table, png_md
from fundarb_dagster.defs.common.tables import ensure_tables, write_run, write_window


def described(conn: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in conn.execute(f"DESCRIBE {name}").fetchall()]


@pytest.fixture
def conn(tmp_path: Path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield conn
    conn.close()


def test_raw_tables_of_streams_never_captured_have_their_columns_and_types(conn, tmp_path: Path):
    ensure_raw_tables(conn, tmp_path / "data", *RAW_TABLES)
    for name in RAW_TABLES:
        assert described(conn, name) == TABLES[name].duckdb_columns, name
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 0


def test_funding_tables_created_empty_have_the_columns_their_sql_files_select(conn):
    names = [t.name for t in FUNDING]
    ensure_tables(conn, *names)
    for name in names:
        assert described(conn, name) == TABLES[name].duckdb_columns, name


def test_writing_a_window_twice_leaves_one_copy_and_keeps_other_windows(conn):
    hours = pd.date_range("2026-03-01", periods=4, freq="h").astype("datetime64[us]")
    columns = TABLES["funding_predictions"].column_names
    frame = pd.DataFrame({c: pd.Series(float("nan"), index=range(4)) for c in columns})
    frame = frame.assign(exchange="bybit", symbol="BTC/USDT:USDT", ts=hours, funding_ts=hours + pd.Timedelta(hours=8))
    frame["predicted_rate"] = 1e-4
    whole = Window(hours[0].to_pydatetime(), (hours[-1] + pd.Timedelta(hours=1)).to_pydatetime())
    assert write_window(conn, "funding_predictions", frame, whole) == 4
    second = Window(hours[1].to_pydatetime(), hours[2].to_pydatetime())
    changed = frame.assign(predicted_rate=2e-4)
    for _ in range(2):
        assert write_window(conn, "funding_predictions", changed, second) == 1  # only rows inside the window
    rates = conn.execute("SELECT predicted_rate FROM funding_predictions ORDER BY ts").fetchall()
    assert [r[0] for r in rates] == [1e-4, 2e-4, 1e-4, 1e-4]


def test_writing_a_run_replaces_only_that_run(conn):
    ts = pd.date_range("2026-03-01", periods=3, freq="h").astype("datetime64[us]")
    equity = pd.DataFrame({"ts": ts, "equity": [1.0, 2.0, 3.0], "drawdown": 0.0, "in_market": False})
    for column in ("basis_pnl", "funding_pnl", "borrow_pnl", "fees_pnl", "slippage_pnl", "liquidation_pnl"):
        equity[column] = 0.0
    equity["gross_exposure"] = 0.0
    assert write_run(conn, "backtest_equity", equity.assign(run_id="a"), "run_id", "a") == 3
    assert write_run(conn, "backtest_equity", equity.assign(run_id="b"), "run_id", "b") == 3
    assert write_run(conn, "backtest_equity", equity.head(1).assign(run_id="a"), "run_id", "a") == 1
    counts = dict(conn.execute("SELECT run_id, count(*) FROM backtest_equity GROUP BY run_id").fetchall())
    assert counts == {"a": 1, "b": 3}
    assert described(conn, "backtest_equity") == TABLES["backtest_equity"].duckdb_columns


def test_markdown_tables_and_plots_for_the_ui():
    table = md_table(pd.DataFrame({"venue": ["bybit", "binance"], "apr": [0.1234567, float("nan")]}), max_rows=1)
    assert table.value.splitlines()[:3] == ["| venue | apr |", "|---|---|", "| bybit | 0.123457 |"]
    assert "_1 more rows_" in table.value
    metrics = md_table({"sharpe": 1.23456, "final_equity_usd": 1_234_567.0}, digits=4)
    assert "| sharpe | 1.235 |" in metrics.value and "| final_equity_usd | 1.235e+06 |" in metrics.value
    assert md_table(pd.DataFrame()).value == "_no rows_"
    assert png_md(b"\x89PNG", "equity").value == "![equity](data:image/png;base64,iVBORw==)"
    assert png_md(b"\x89PNG", "equity", heading=True).value.startswith("### equity\n\n![equity](")
