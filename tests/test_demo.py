"""`fundarb demo` end to end at a small size: real sim history, a real MPI capture, and the real daemon running
the pipeline by itself (its sensors launch every run)."""

from __future__ import annotations

import duckdb
import pytest
from dagster import DagsterInstance

from fundarb_dagster.core.tables import TABLES
from fundarb_dagster.defs.jobs import STAGES, stage_asset_names
from fundarb_dagster.demo import landed_streams
from tests.conftest import DemoRun


@pytest.mark.slow
@pytest.mark.mpi
def test_demo_lands_data_fills_the_warehouse_and_records_runs_in_its_instance(demo_run: DemoRun):
    data, out = demo_run.data, demo_run.out
    streams = landed_streams(data)
    assert {"trades", "tickers", "funding", "ohlcv"} <= set(streams)
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        landed_trades = streams["trades"][1]
        assert con.execute("SELECT count(*) FROM raw_trades").fetchone()[0] == landed_trades
        # Every table the demo reports on was built.
        for table in ("ohlcv_1m", "funding_rates", "basis", "opportunities", "backtest_runs", "risk_report"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
        # The demo captures order books: its opportunities are costed on them and show their capacity.
        assert streams["order_book"][1] == con.execute("SELECT count(*) FROM raw_order_book").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM book_depth").fetchone()[0] > 0
        # ... and the perps' open interest and liquidation prints, landed once each and summed per hour
        for stream in ("open_interest", "liquidations"):
            assert streams[stream][1] == con.execute(f"SELECT count(*) FROM raw_{stream}").fetchone()[0] > 0, stream
            assert con.execute(f"SELECT count(*) FROM {stream}").fetchone()[0] > 0, stream
        top = con.execute(
            "SELECT cost_source, capacity_usd FROM opportunities WHERE rank <= 5 ORDER BY rank"
        ).fetchall()
        assert top and all(source == "book" and capacity >= 0 for source, capacity in top), top
        strategies = {row[0] for row in con.execute("SELECT DISTINCT strategy FROM backtest_runs").fetchall()}
        assert strategies == {"cash_carry", "perp_perp"}
        # its backtests size by the books' capacity (demo_config.yaml), each position saying what sized it
        assert {row[0] for row in con.execute("SELECT DISTINCT sizing FROM backtest_runs").fetchall()} == {"capacity"}
        sized = {row[0] for row in con.execute("SELECT DISTINCT size_source FROM backtest_positions").fetchall()}
        assert sized and sized <= {"capacity", "capital", "even"}, sized
        # Every table, the sweep included, is built with exactly the columns core/tables.py gives it.
        built = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert set(TABLES) - built == set()  # the execution tables too: the demo paper-trades
        # the paper trader traded, landed through the pipeline, and its funding reconciles to the model
        assert con.execute("SELECT count(*) FROM fills").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM positions").fetchone()[0] > 0
        paid = con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'mismatch') FROM funding_reconciliation")
        settlements, mismatches = paid.fetchone()
        assert settlements > 0 and mismatches == 0
        for name in set(TABLES) & built:
            columns = [(row[0], row[1]) for row in con.execute(f"DESCRIBE {name}").fetchall()]
            assert columns == TABLES[name].duckdb_columns, name
    finally:
        con.close()

    # The runs are in the demo's own instance, where `fundarb ui` opens: named stage runs the sensors launched.
    instance = DagsterInstance.from_config(str(data / "dagster_home"))
    runs = instance.get_runs()
    # every stage ran, the trader's too (the demo paper-trades: execution_job runs from its first fill on)
    assert {run.job_name for run in runs} == {stage.job for stage in STAGES}
    assert {run.tags["fundarb/trigger"].split(" ")[0] for run in runs} == {"landing_sensor", "pipeline_sensor"}
    instance.dispose()
    assert f"assets with a materialization: {len(stage_asset_names())} of {len(stage_asset_names())}" in out
    assert "waiting for the trader" not in out and "never materialized" not in out
    headings = ("runs the sensors launched", "top opportunities", "backtests: metrics", "paper trader: positions")
    for heading in (*headings, "paper trader: funding received", "alerts raised"):
        assert heading in out
    assert "capacity_k_usd" in out and "cost_source" in out and "size_source" in out
    assert "fundarb ui --data-dir" in out
