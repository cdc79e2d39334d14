"""Real materializations of the backtest assets against a real DuckDB file holding the input tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from dagster import materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.accounting import annualize
from fundarb_dagster.core.backtest.synthetic import VENUE_INTERVAL_H, synthetic_panel
from fundarb_dagster.core.tables import TABLES
from fundarb_dagster.defs.backtest import checks
from fundarb_dagster.defs.backtest.assets import backtest, backtest_sweep
from fundarb_dagster.defs.common.panel import load_panel
from fundarb_dagster.defs.common.tables import write_run
from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource

from .warehouse_inputs import write_inputs

CONFIG = {
    "strategy": "cash_carry",
    "enter_apr": 0.1,
    "exit_apr": 0.02,
    "leverage": 8.0,
    "max_hold_h": 120.0,
    "rebalance_h": 24.0,
    "stop_distance": 0.02,
    "capital": 100000.0,
    "borrow_apr": 0.06,
    "drawdown_stop": 0.0,
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    panel = synthetic_panel(24 * 20, seed=5)
    path = tmp_path_factory.mktemp("bt") / "w.duckdb"
    write_inputs(panel, path)
    return path, panel


def resources(path: Path) -> dict:
    # the source config: the embedded defaults (no dated fees: each venue's own)
    return {"duckdb": DuckDBResource(database=str(path)), "data_dir": DataDirResource(data_dir=str(path.parent)),
            "source": SourceConfigResource()}  # fmt: skip


def test_backtest_materializes_and_matches_core_on_the_same_data(warehouse: tuple[Path, object]) -> None:
    path, panel = warehouse
    result = materialize(
        [
            backtest,
            checks.backtest_runs_attribution_adds_up,
            checks.backtest_equity_is_finite,
            checks.backtest_trades_costs_are_nonnegative,
        ],
        resources=resources(path),
        run_config={"ops": {"backtest": {"config": CONFIG}}},
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    run_id = result.run_id
    params = BacktestParams(**{k: v for k, v in CONFIG.items() if k not in ("strategy", "borrow_apr")})
    direct = run_backtest(panel, get_strategy("cash_carry").pairs(panel, {"borrow_apr": 0.06}), params)
    with duckdb.connect(str(path), read_only=True) as conn:
        eq = conn.execute(
            "SELECT equity FROM backtest_equity WHERE run_id = $r ORDER BY ts", {"r": run_id}
        ).fetchnumpy()
        run = conn.execute("SELECT * FROM backtest_runs WHERE run_id = $r", {"r": run_id}).df().iloc[0]
        n_trades = conn.execute("SELECT count(*) FROM backtest_trades WHERE run_id = $r", {"r": run_id}).fetchone()[0]
        book = conn.execute("SELECT * FROM backtest_book WHERE run_id = $r", {"r": run_id}).df()
        n_pos = conn.execute("SELECT count(*) FROM backtest_positions WHERE run_id = $r", {"r": run_id}).fetchone()[0]
    np.testing.assert_allclose(eq["equity"], direct.equity["equity"], rtol=1e-9)
    assert run["funding_pnl"] == pytest.approx(direct.attribution["funding"], rel=1e-9)
    assert run["sharpe"] == pytest.approx(direct.metrics["sharpe"], rel=1e-6)
    assert n_trades == len(direct.trades) and n_pos == len(direct.positions)
    assert len(book) == len(direct.open_positions)
    meta = result.asset_materializations_for_node("backtest")[0].metadata
    assert meta["equity_and_drawdown"].value.startswith("![equity](data:image/png;base64,")
    # the summary is a one-row table (inline on the page), fractions in percent, USD thousands-separated
    (summary,) = (r.data for r in meta["summary"].records)
    assert summary["strategy"] == "cash_carry"
    assert summary["sharpe"] == pytest.approx(round(direct.metrics["sharpe"], 2))
    assert summary["total_return_pct"] == pytest.approx(round(direct.metrics["total_return"] * 100, 2))
    assert summary["final_equity_usd"] == f"{direct.equity['equity'].iloc[-1]:,.0f}"
    assert meta["max_drawdown_pct"].value == pytest.approx(round(direct.metrics["max_drawdown"] * 100, 2))
    attribution = {r.data["source"]: r.data["pnl_usd"] for r in meta["attribution"].records}
    assert attribution["funding"] == f"{direct.attribution['funding']:,.0f}"
    # the comparison holds the latest run of each strategy in the warehouse (here only this one)
    assert [r.data["strategy"] for r in meta["strategies_compared"].records] == ["cash_carry"]


def test_the_drawdown_stop_closes_the_book_inside_the_backtest(warehouse: tuple[Path, object]) -> None:
    """drawdown_stop 0.5 %: the run closes every pair at the bar its marked drawdown reaches it, as the core
    engine does on the same data, records when, and trades no more (the risk report's limit as a stop, not
    only an alert)."""
    path, panel = warehouse
    config = {**CONFIG, "drawdown_stop": 0.005}
    result = materialize([backtest], resources=resources(path), run_config={"ops": {"backtest": {"config": config}}})
    params = BacktestParams(**{k: v for k, v in config.items() if k not in ("strategy", "borrow_apr")})
    direct = run_backtest(panel, get_strategy("cash_carry").pairs(panel, {"borrow_apr": 0.06}), params)
    halt = int(direct.arrays["halt"][0])
    assert halt < len(panel.ts_ms)
    with duckdb.connect(str(path), read_only=True) as conn:
        r = {"r": result.run_id}
        eq = conn.execute("SELECT ts, equity FROM backtest_equity WHERE run_id = $r ORDER BY ts", r).df()
        run = conn.execute("SELECT * FROM backtest_runs WHERE run_id = $r", r).df().iloc[0]
        trades = conn.execute("SELECT ts, reason, fee_usd, slippage_usd FROM backtest_trades WHERE run_id = $r", r).df()
        book = conn.execute("SELECT * FROM backtest_book WHERE run_id = $r", r).df()
    np.testing.assert_allclose(eq["equity"], direct.equity["equity"], rtol=1e-9)
    stop_ts = eq["ts"].iloc[halt]
    assert run["drawdown_stop_ts"] == stop_ts
    # the marked drawdown of every bar, recomputed from the stored tables: the bar's equity plus the costs of
    # the trades decided at it, against the peak of the capital and the bars before; the first to reach 0.5 %
    # is the stop
    assert "liquidation" not in set(trades["reason"])  # (a liquidated leg's close would belong to the mark)
    per_bar = trades.groupby("ts")[["fee_usd", "slippage_usd"]].sum().sum(axis=1)
    marked = eq["equity"] + eq["ts"].map(per_bar).fillna(0.0)
    peak = np.maximum.accumulate(np.r_[config["capital"], eq["equity"].to_numpy()[:-1]])
    drawn = 1 - marked.to_numpy() / np.maximum(peak, marked.to_numpy())
    assert int(np.argmax(drawn >= 0.005)) == halt
    assert set(trades.loc[trades["ts"] == stop_ts, "reason"]) == {"drawdown"}
    assert (trades["ts"] <= stop_ts).all() and book.empty
    assert eq["equity"].iloc[halt:].nunique() == 1


def test_writing_a_run_again_replaces_its_rows_and_new_runs_append(
    warehouse: tuple[Path, object], tmp_path: Path
) -> None:
    path, _ = warehouse
    with duckdb.connect(str(path)) as conn:
        rows = conn.execute("SELECT * FROM backtest_equity").df()
        runs_before = conn.execute("SELECT count(DISTINCT run_id) FROM backtest_equity").fetchone()[0]
    one = rows[rows["run_id"] == rows["run_id"].iloc[0]].copy()
    one["run_id"] = "fixed"
    frame = one.rename(
        columns={
            "borrow_cost": "borrow_pnl",
            "fees": "fees_pnl",
            "slippage": "slippage_pnl",
            "liquidation_loss": "liquidation_pnl",
            "gross_exposure_usd": "gross_exposure",
        }
    )
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(path.read_bytes())
    with duckdb.connect(str(copy)) as conn:
        write_run(conn, "backtest_equity", frame, "run_id", "fixed")
        write_run(conn, "backtest_equity", frame, "run_id", "fixed")
        n = conn.execute("SELECT count(*) FROM backtest_equity WHERE run_id = 'fixed'").fetchone()[0]
    assert n == len(frame)
    result = materialize([backtest], resources=resources(path), run_config={"ops": {"backtest": {"config": CONFIG}}})
    with duckdb.connect(str(path)) as conn:
        runs_after = conn.execute("SELECT count(DISTINCT run_id) FROM backtest_equity").fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM backtest_runs WHERE run_id = $r", {"r": result.run_id}).fetchone()[0]
    assert runs_after == runs_before + 1 and runs == 1


def test_panel_takes_intervals_from_funding_intervals(warehouse: tuple[Path, object], tmp_path: Path) -> None:
    path, panel = warehouse
    copy = tmp_path / "nopred.duckdb"
    copy.write_bytes(path.read_bytes())
    with duckdb.connect(str(copy)) as conn:
        conn.execute("DROP TABLE funding_predictions")  # expectations now come from settled rates
        from datetime import datetime

        loaded = load_panel(conn, datetime(1970, 1, 1), datetime(2200, 1, 1))
    j = loaded.index_of("hyperliquid", "BTC/USDC:USDC")
    k = panel.index_of("hyperliquid", "BTC/USDC:USDC")
    booked = np.nonzero(panel.funding_cash[:, k])[0]
    rate = panel.funding_cash[booked, k] / panel.ref[booked, k]
    np.testing.assert_allclose(
        loaded.expected_apr[booked, j], annualize(rate, VENUE_INTERVAL_H["hyperliquid"]), rtol=1e-12
    )
    np.testing.assert_allclose(loaded.funding_cash[:, j], panel.funding_cash[:, k], rtol=1e-12)


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_sweep_materializes_grid_walk_forward_folds_and_the_stitched_result(
    warehouse: tuple[Path, object], mode: str
) -> None:
    path, panel = warehouse
    config = {
        "strategy": "perp_perp",
        "enter_apr_grid": [0.05, 0.1, 0.2],
        "exit_apr_grid": [0.0],
        "max_hold_h_grid": [0.0, 48.0],
        "leverage_grid": [2.0, 5.0],
        "walk_folds": 3,
        "walk_mode": mode,
    }
    result = materialize(
        [backtest_sweep], resources=resources(path), run_config={"ops": {"backtest_sweep": {"config": config}}}
    )
    assert result.success
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT * FROM backtest_sweep WHERE run_id = $r", {"r": result.run_id}).df()
        columns = [(row[0], row[1]) for row in conn.execute("DESCRIBE backtest_sweep").fetchall()]
    assert columns == TABLES["backtest_sweep"].duckdb_columns  # core/tables.py says what the SQL file writes
    assert rows.groupby("part").size().to_dict() == {"full": 12, "train": 36, "test": 36, "stitched": 1}
    # each fold chose the best training point, and trained only on bars before its test window
    train, test = rows[rows.part == "train"], rows[rows.part == "test"]
    for fold in range(3):
        t, s = train[train.fold == fold], test[test.fold == fold]
        best = t.sort_values("sharpe", ascending=False, na_position="last").iloc[0]["point"]
        assert set(t.loc[t.chosen, "point"]) == set(s.loc[s.chosen, "point"]) == {best}
        assert t["window_end"].max() < s["window_start"].min()
        assert (t["window_start"].min() == rows["window_start"].min()) == (mode == "expanding" or fold == 0)
    # the test windows follow each other; the stitched row covers them, its return chains theirs
    starts = sorted(test["window_start"].unique())
    stitched = rows[rows.part == "stitched"].iloc[0]
    assert stitched["window_start"] == starts[0] and stitched["window_end"] == rows["window_end"].max()
    chosen = test[test.chosen].sort_values("fold")
    growth = chosen["final_equity_usd"].to_numpy() / 1e6  # each test window from the default capital
    assert stitched["final_equity_usd"] == pytest.approx(1e6 * np.prod(growth), rel=1e-9)
    # total_return counts from a curve's first bar (after its entry costs): the stitched one from fold 0's
    first_bar = growth[0] / (1 + chosen["total_return"].iloc[0])
    assert 1 + stitched["total_return"] == pytest.approx(np.prod(growth) / first_bar, rel=1e-9)
    meta = result.asset_materializations_for_node("backtest_sweep")[0].metadata
    assert meta["heatmap"].value.startswith("![heatmap](data:image/png;base64,")
    assert "stitched" in meta["walk_forward_equity"].value
    folds = [r.data for r in meta["walk_forward_folds"].records]
    assert [f["fold"] for f in folds] == [0, 1, 2] and all("train_sharpe" in f for f in folds)
    assert [f["point"] for f in folds] == [int(p) for p in train[train.chosen].sort_values("fold")["point"]]
    best_full = rows[rows.part == "full"]["sharpe"].max()
    assert meta["best_sharpe"].value == pytest.approx(round(best_full, 2))
    assert meta["grid_points"].value == 12


def test_bad_config_fails_with_the_field_named(warehouse: tuple[Path, object]) -> None:
    path, _ = warehouse
    for bad, match in (
        ({"strategy": "nope"}, "strategy"),
        ({"start": "yesterday-ish"}, "start"),
        ({"enter_apr": 0.01, "exit_apr": 0.02}, "enter_apr"),
    ):
        with pytest.raises(Exception, match=match):
            materialize([backtest], resources=resources(path), run_config={"ops": {"backtest": {"config": bad}}})


def test_each_strategy_is_its_own_partition_and_keeps_its_results(tmp_path: Path) -> None:
    """Partitioned by strategy: each partition's latest materialization is its own run (one strategy never
    replaces the other's in the UI), the comparison on the page lists both, and a config that contradicts the
    partition is refused naming both."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    def latest(partition: str):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("backtest_runs"), asset_partitions=[partition]), limit=1
        ).records
        return records[0].event_log_entry

    panel = synthetic_panel(24 * 10, seed=7)
    path = tmp_path / "w.duckdb"
    write_inputs(panel, path)
    instance = DagsterInstance.ephemeral()
    runs = {}
    for strategy in ("cash_carry", "perp_perp"):
        result = materialize(
            [backtest],
            partition_key=strategy,
            resources=resources(path),
            instance=instance,
            run_config={"ops": {"backtest": {"config": {"enter_apr": 0.05, "borrow_apr": 0.06}}}},
        )
        assert result.success
        runs[strategy] = result.run_id
    for strategy, run_id in runs.items():
        event = latest(strategy)
        assert event.run_id == run_id
        assert event.asset_materialization.metadata["strategy"].value == strategy
    with duckdb.connect(str(path), read_only=True) as conn:
        stored = dict(conn.execute("SELECT strategy, run_id FROM backtest_runs").fetchall())
    assert stored == runs
    last = latest("perp_perp")
    compared = {r.data["strategy"] for r in last.asset_materialization.metadata["strategies_compared"].records}
    assert compared == {"cash_carry", "perp_perp"}
    with pytest.raises(Exception, match="contradicts the run's partition 'cash_carry'"):
        materialize(
            [backtest],
            partition_key="cash_carry",
            resources=resources(path),
            run_config={"ops": {"backtest": {"config": {"strategy": "perp_perp"}}}},
        )
