"""The Dagster UI after the demo, as a user meets it: a real webserver on the demo's instance, asked through its
GraphQL API (the UI's own data), and one page opened in a real browser (the OS's Chromium via Playwright)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fundarb_dagster.core.backtest import STRATEGIES
from fundarb_dagster.webui import PAGES, browser_page, find_chromium, graphql, open_page, skip_welcome, webserver
from tests.conftest import DemoRun, copy_demo

LATEST = """
query Latest($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetMaterializations(limit: 1, partitions: $partitions) {
        runId
        partition
        metadataEntries {
          label
          __typename
          ... on TableMetadataEntry { table { records schema { columns { name type description } } } }
          ... on FloatMetadataEntry { floatValue }
          ... on IntMetadataEntry { intValue }
        }
      }
    }
  }
}
"""
CHECKS = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          partitionStatuses { ... on AssetCheckTimePartitionStatuses { ranges { status startKey endKey } } }
        }
      }
    }
  }
}
"""
CHECK_EXECUTIONS = """
query Executions($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 50) {
    status
    evaluation {
      success
      severity
      partition
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
      }
    }
  }
}
"""
RUNS = """
{
  runsOrError(limit: 500) {
    ... on Runs { results { runId jobName status tags { key value } } }
  }
}
"""
# Metadata that counts what a check looked at: zero of it and a pass is a check that passed on nothing.
COUNTS = ("rows_checked", "rows", "settlements", "deliveries", "series")


@pytest.fixture(scope="module")
def demo_ui(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The small demo of the session (real sim history, a real MPI capture, the real pipeline; `demo_run`), then
    the real webserver on (a copy of) its instance: (data folder, base URL)."""
    data = copy_demo(demo_run, tmp_path_factory.mktemp("ui") / "data")
    with webserver(data, data.parent / "webserver.log") as base:
        yield data, base


def _latest(base: str, asset: str, partition: str | None = None) -> dict[str, Any]:
    variables = {"key": {"path": [asset]}, "partitions": [partition] if partition else None}
    (event,) = graphql(base, LATEST, variables)["assetNodeOrError"]["assetMaterializations"]
    return event


def _table(event: dict[str, Any], label: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """A table metadata entry's rows and its columns (name -> type, description)."""
    entry = next(e for e in event["metadataEntries"] if e["label"] == label)
    assert entry["__typename"] == "TableMetadataEntry", (label, entry["__typename"])
    columns = {c["name"]: c for c in entry["table"]["schema"]["columns"]}
    return [json.loads(r) for r in entry["table"]["records"]], columns


def _warehouse(data: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.mpi
def test_graphql_serves_tables_per_strategy_backtests_honest_checks_and_named_runs(demo_ui):
    data, base = demo_ui

    # The ranking: a table with a schema, units in the column names and descriptions, rows as the warehouse ranks
    ranking, columns = _table(_latest(base, "opportunities"), "ranking")
    stored = _warehouse(data, "SELECT rank, strategy, underlying, net_carry_apr FROM opportunities ORDER BY rank")
    assert ranking and len(ranking) == min(20, len(stored))
    assert [(r["rank"], r["strategy"], r["underlying"]) for r in ranking] == [s[:3] for s in stored[: len(ranking)]]
    assert ranking[0]["net_carry_apr_pct"] == pytest.approx(round(stored[0][3] * 100, 2))
    assert "percent" in columns["net_carry_apr_pct"]["description"]
    entries = _latest(base, "opportunities")["metadataEntries"]
    headline = next(e for e in entries if e["label"] == "best_net_carry_apr_pct")
    assert headline["__typename"] == "FloatMetadataEntry"  # typed: the Plots tab charts it over runs

    # The alerts: a table of the newest alerts, as many as the warehouse held when it was materialized (up to 20;
    # the live book's risk, evaluated by execution_job after it, raises its own into the same table), each of them
    # in the warehouse
    event = _latest(base, "alerts")
    alerts, _ = _table(event, "recent_alerts")
    held = next(e["intValue"] for e in event["metadataEntries"] if e["label"] == "alerts_total")
    (total,) = _warehouse(data, "SELECT count(*) FROM alerts")[0]
    assert 0 < held <= total and len(alerts) == min(20, held)
    stored = set(_warehouse(data, "SELECT rule, subject, message FROM alerts"))
    assert {(a["rule"], a["subject"], a["message"]) for a in alerts} <= stored

    # Every strategy keeps its own backtest: one partition each, its own run, its own summary table
    run_ids = set()
    for strategy in sorted(STRATEGIES):
        event = _latest(base, "backtest_runs", strategy)
        assert event["partition"] == strategy
        summary, columns = _table(event, "summary")
        assert [row["strategy"] for row in summary] == [strategy]
        assert "final_equity_usd" in columns and "max_drawdown_pct" in columns
        run_ids.add(event["runId"])
    assert len(run_ids) == len(STRATEGIES)
    compared, _ = _table(_latest(base, "backtest_runs"), "strategies_compared")
    assert {row["strategy"] for row in compared} == set(STRATEGIES)

    # No check result is "passed" over nothing: every pass counted rows (or says what it counted)
    nodes = graphql(base, CHECKS)["assetNodes"]
    checks = [
        (node["assetKey"]["path"], check["name"])
        for node in nodes
        for check in (node["assetChecksOrError"] or {}).get("checks", [])
        if node["assetKey"]["path"][0] != "history"  # history/<table> repeats its table's checks (defs/history.py)
    ]
    assert len({name for _, name in checks}) == len(checks), "check names are unique"
    evaluated = passed_with_rows = 0
    for path, name in checks:
        executions = graphql(base, CHECK_EXECUTIONS, {"key": {"path": path}, "name": name})["assetCheckExecutions"]
        for execution in executions:
            evaluation = execution["evaluation"]
            if evaluation is None:
                continue
            evaluated += 1
            counts = {e["label"]: e.get("intValue") for e in evaluation["metadataEntries"] if e["label"] in COUNTS}
            if evaluation["success"]:
                assert all(v != 0 for v in counts.values()), (name, evaluation["partition"], counts)
                passed_with_rows += bool(counts)
    assert evaluated and passed_with_rows, "the demo's checks looked at rows"
    # The Checks tab lists a partitioned check by its partitions: every hour the ranged runs built was checked
    # (none left "planned", which the list shows as Skipped while the detail pane shows the run's result)
    bars = {
        check["name"]: (check["partitionStatuses"] or {}).get("ranges", [])
        for node in nodes
        if node["assetKey"]["path"] == ["ohlcv_1m"]
        for check in node["assetChecksOrError"]["checks"]
        if check["partitionStatuses"] is not None
    }
    assert len(bars) == 3 and all(bars.values()), bars
    assert not [(name, r) for name, ranges in bars.items() for r in ranges if r["status"] == "SKIPPED"], bars

    # Capture statistics live on the data's clock (the simulated days), not the wall clock of the test
    ((stats_first, stats_last),) = _warehouse(data, "SELECT min(ts_ms), max(ts_ms) FROM capture_stats")
    ((trades_first, trades_last),) = _warehouse(data, "SELECT min(ts_ms), max(ts_ms) FROM raw_trades")
    hour = 3_600_000
    assert trades_first - hour <= stats_first and stats_last <= trades_last + hour

    # The run list: every run of the demo is a named job; ranged runs carry their range
    runs = graphql(base, RUNS)["runsOrError"]["results"]
    assert runs
    assert not [r["jobName"] for r in runs if r["jobName"].startswith("__")], "anonymous runs"
    ranged = [r for r in runs if any(t["key"] == "dagster/asset_partition_range_start" for t in r["tags"])]
    assert ranged, "the demo's ranged runs are labelled with their range"


@pytest.mark.slow
@pytest.mark.mpi
def test_opportunities_page_shows_the_ranking_without_a_click_in_a_real_browser(demo_ui):
    data, base = demo_ui
    find_chromium()  # the OS's Chromium (CI: `apt-get install -y chromium`); a clear error when missing
    stored = _warehouse(data, "SELECT rank, strategy, underlying, long_exchange FROM opportunities ORDER BY rank")
    page_spec = next(p for p in PAGES if p.name == "opportunities")
    skip_welcome(base)  # the one-time community dialog, as its Skip button does
    with browser_page() as page:
        open_page(page, base, page_spec)  # loads the page and scrolls to the ranking: no click
        # the ranking's own table: the innermost one whose header has the ranking's APR column
        table = page.locator("xpath=//th[normalize-space()='net_carry_apr_pct']/ancestor::table[1]").first
        table.wait_for(state="visible")
        rows = table.locator("tbody tr")
        assert rows.count() == min(20, len(stored))
        height = page.viewport_size["height"]
        for i, (rank, strategy, underlying, long_exchange) in enumerate(stored[:3]):
            cells = rows.nth(i).locator("td").all_inner_texts()
            assert cells[:3] == [str(rank), strategy, underlying], cells
            assert long_exchange in cells
            box = rows.nth(i).bounding_box()  # in the view, not below the fold
            assert rows.nth(i).is_visible() and box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height
        # no "Show Markdown" modal or other dialog stands between the page and the ranking
        assert page.get_by_role("dialog").count() == 0
