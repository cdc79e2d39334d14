"""risk_report against a real DuckDB file: figures, breaches, stress rows, alerts through the channels."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.backtest.synthetic import synthetic_panel
from fundarb_dagster.core.risk import stress_book
from fundarb_dagster.defs.backtest.assets import backtest
from fundarb_dagster.defs.resources import AlertChannelsResource, DataDirResource, SourceConfigResource
from fundarb_dagster.defs.risk import checks
from fundarb_dagster.defs.risk.assets import risk

from ..backtest.warehouse_inputs import write_inputs

SHOCKS = [-0.3, -0.1, 0.1, 0.3]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("risk") / "w.duckdb"
    write_inputs(synthetic_panel(24 * 15, seed=9), path)
    config = {"strategy": "perp_perp", "enter_apr": 0.03, "exit_apr": 0.0, "leverage": 6.0, "capital": 100000.0}
    assert materialize([backtest], resources=res(path), run_config={"ops": {"backtest": {"config": config}}}).success
    return path


def res(path: Path) -> dict:
    return {
        "duckdb": DuckDBResource(database=str(path)),
        "data_dir": DataDirResource(data_dir=str(path.parent)),
        "source": SourceConfigResource(),
        "alert_channels": AlertChannelsResource(),
    }


def test_risk_report_breaches_raise_alerts_once(warehouse: Path) -> None:
    config = {
        "max_leverage": 1.0,
        "max_venue_share": 0.2,
        "min_liq_distance": 0.5,
        "max_drawdown": 0.0001,
        "shocks": SHOCKS,
        "alert_cooldown_h": 24.0,
    }
    result = materialize(
        [risk, checks.risk_report_has_no_critical_breach],
        resources=res(warehouse),
        run_config={"ops": {"risk": {"config": config}}},
    )
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed  # leverage far above 1x is a critical breach: the (warn) check says so
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        book = conn.execute("SELECT * FROM backtest_book").df()
        report = conn.execute("SELECT * FROM risk_report WHERE report_id = $r", {"r": result.run_id}).df()
        stress = conn.execute(
            "SELECT * FROM risk_stress WHERE report_id = $r ORDER BY pair, shock_pct", {"r": result.run_id}
        ).df()
        alerts = conn.execute("SELECT rule, subject, value, threshold, severity FROM alerts").df()
    assert len(book) > 0
    breaches = report[report["section"] == "breach"]
    assert {"risk_leverage", "risk_venue_concentration", "risk_liq_distance"} <= set(breaches["name"])
    lev = report[(report["section"] == "figure") & (report["name"] == "leverage")]["value"].iloc[0]
    gross = float((book["units"].abs() * book["mark_price"]).sum())
    assert lev == pytest.approx(gross / report[report["name"] == "equity_usd"]["value"].iloc[0])
    # every breach became one alert, stored and written to the JSONL channel
    assert sorted(alerts["rule"]) == sorted(breaches["name"])
    lines = (warehouse.parent / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == len(breaches)
    assert {json.loads(line)["rule"] for line in lines} == set(breaches["name"])
    # the stress table is the core stress of the stored book
    expected = stress_book(book, SHOCKS).sort_values(["pair", "shock_pct"]).reset_index(drop=True)
    assert len(stress) == book["pair"].nunique() * len(SHOCKS)
    np.testing.assert_allclose(stress["margin_needed_usd"], expected["margin_needed_usd"], rtol=1e-12)
    # the UI shows the stress as a table, the shock needing the most margin first, in USD with separators
    (shown,) = [m.metadata for m in result.asset_materializations_for_node("risk") if "stress_table" in m.metadata]
    records = shown["stress_table"].value.records
    assert len(records) == len(stress)
    worst = stress.loc[stress["margin_needed_usd"].idxmax()]
    first = records[0].data
    assert (first["pair"], first["shock_pct"]) == (worst["pair"], worst["shock_pct"])
    assert first["margin_needed_usd"] == f"{worst['margin_needed_usd']:,.0f}"
    assert shown["worst_margin_needed_usd"].value == pytest.approx(worst["margin_needed_usd"], abs=0.005)
    # a second report inside the cooldown raises nothing new
    again = materialize([risk], resources=res(warehouse), run_config={"ops": {"risk": {"config": config}}})
    meta = again.asset_materializations_for_node("risk")[0].metadata
    assert meta["alerts_raised"].value == 0 and meta["alerts_suppressed"].value == len(breaches)
    assert len((warehouse.parent / "alerts" / "alerts.jsonl").read_text().splitlines()) == len(breaches)


def test_risk_report_without_breaches_raises_nothing(warehouse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    with duckdb.connect(str(copy)) as conn:
        conn.execute("DROP TABLE IF EXISTS alerts")
    config = {
        "max_leverage": None,
        "max_venue_share": None,
        "max_asset_share": None,
        "min_liq_distance": None,
        "max_drawdown": None,
        "max_margin_utilization": None,
    }
    result = materialize([risk], resources=res(copy), run_config={"ops": {"risk": {"config": config}}})
    meta = result.asset_materializations_for_node("risk")[0].metadata
    assert meta["breaches"].value == 0 and meta["alerts_raised"].value == 0


def test_unknown_run_id_is_a_clear_error(warehouse: Path) -> None:
    with pytest.raises(Exception, match="run_id: 'nope'"):
        materialize([risk], resources=res(warehouse), run_config={"ops": {"risk": {"config": {"run_id": "nope"}}}})


def test_var_is_of_the_current_book_over_past_price_and_funding_moves(warehouse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    window_h, level = 24 * 10, 0.95
    config = {"var_window_h": window_h, "var_level": level, "max_var_usd": 1.0}
    result = materialize([risk], resources=res(copy), run_config={"ops": {"risk": {"config": config}}})
    with duckdb.connect(str(copy), read_only=True) as conn:
        report = conn.execute("SELECT * FROM risk_report WHERE report_id = $r", {"r": result.run_id}).df()
        book = conn.execute("SELECT * FROM backtest_book").df()
        bars = conn.execute("SELECT exchange, symbol, ts, close FROM ohlcv_1h").df()
        paid = conn.execute("SELECT exchange, symbol, funding_ts, funding_rate FROM funding_rates").df()
    assert len(book) > 0
    as_of = pd.Timestamp(book["ts"].iloc[0])
    # independent: merge each leg's close with the close an hour before, and the settlements of the hour after
    legs = book[["exchange", "symbol", "kind", "units", "mark_price"]]
    before = bars.assign(ts=bars["ts"] + pd.Timedelta("1h"))
    hourly = bars.merge(before, on=["exchange", "symbol", "ts"], suffixes=("", "_before"))
    hourly = hourly.merge(legs, on=["exchange", "symbol"])  # a perp in two pairs is two legs
    hourly = hourly[(hourly["ts"] >= as_of - pd.Timedelta(hours=window_h)) & (hourly["ts"] < as_of)].copy()
    paid["ts"] = paid["funding_ts"].dt.ceil("h") - pd.Timedelta("1h")
    rates = paid.groupby(["exchange", "symbol", "ts"], as_index=False)["funding_rate"].sum()
    hourly = hourly.merge(rates, on=["exchange", "symbol", "ts"], how="left").fillna({"funding_rate": 0.0})
    exposure = hourly["units"] * hourly["mark_price"]
    perp = (hourly["kind"] == "perp").astype(float)
    hourly["pnl"] = exposure * (hourly["close"] / hourly["close_before"] - 1) - exposure * hourly["funding_rate"] * perp
    per_hour = hourly.groupby("ts")["pnl"].sum()
    per_hour = per_hour[hourly.groupby("ts").size() == len(legs)]  # hours every leg has a return
    figures = report[report["section"] == "figure"].set_index("name")["value"]
    assert figures["var_scenarios"] == len(per_hour) == window_h
    assert figures["var_usd"] == pytest.approx(-np.quantile(per_hour.to_numpy(), 1 - level), rel=1e-9)
    breach = report[(report["section"] == "breach") & (report["name"] == "risk_var")]
    assert len(breach) == 1 and breach["value"].iloc[0] == pytest.approx(figures["var_usd"])
