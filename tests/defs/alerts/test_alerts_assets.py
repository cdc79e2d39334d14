"""The alerts asset for real: rules over a tmp DuckDB, a failed check read from the Dagster instance, delivery
to the run log, a JSONL file and a local HTTP webhook (with a failing server), dedup across runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.sql import registered
from fundarb_dagster.defs.alerts.assets import alerts
from fundarb_dagster.defs.alerts.checks import ALERT_CHECKS
from fundarb_dagster.defs.common.tables import ensure_tables
from fundarb_dagster.defs.funding.assets import funding_rates
from fundarb_dagster.defs.funding.checks import funding_rates_has_unique_keys
from fundarb_dagster.defs.raw.assets import capture_events, raw_tickers
from fundarb_dagster.defs.resources import (
    AlertChannelsResource,
    DataDirResource,
    SourceConfigResource,
    connect_with_retry,
)
from tests.core.alerts.test_delivery import _Server
from tests.defs.raw.landing_fixtures import RANGE_END, RANGE_START, query

HOUR = pd.Timestamp("2026-03-01 10:00")
HOUR_MS = HOUR.value // 1_000_000
NAMES = {0: ("bybit", "BTC/USDT:USDT"), 1: ("bybit", "BTC/USDT"), 2: ("okx", "ETH/USDT:USDT")}
RULES = {"funding_spread", "carry", "basis_dislocation", "stream_gap", "stream_stale", "asset_check_failed"}


def _resources(data_dir, channels: AlertChannelsResource) -> dict:
    return {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(data_dir)),
        "source": SourceConfigResource(),
        "alert_channels": channels,
    }


def _land(data_dir) -> None:
    """An hour of tickers (okx stops after 20 minutes) and a 10-minute trades gap reported by the capture."""
    times = HOUR_MS + np.arange(0, 3600, 10, dtype=np.int64) * 1000
    parts = []
    for instrument_id in NAMES:
        ts = times if instrument_id != 2 else times[times < HOUR_MS + 20 * 60_000]
        rec = schema.empty("tickers", len(ts))
        rec["ts_ms"], rec["recv_ts_ms"], rec["instrument_id"] = ts, ts + 5, instrument_id
        rec["bid"], rec["ask"] = 100.0, 100.1
        parts.append(rec)
    tickers = np.concatenate(parts)
    landing.write_stream(data_dir, "tickers", schema.to_arrow("tickers", tickers, NAMES), "t", 0)
    event = schema.empty("capture_events", 1)
    event["ts_ms"] = event["recv_ts_ms"] = HOUR_MS + 30 * 60_000
    event["instrument_id"] = 1
    event["stream"] = int(schema.StreamCode.TRADES)
    event["kind"] = int(schema.EventKind.GAP)
    event["start_ms"], event["end_ms"] = HOUR_MS + 20 * 60_000, HOUR_MS + 30 * 60_000
    event["reason"] = b"socket closed"
    landing.write_stream(data_dir, "capture_events", schema.to_arrow("capture_events", event, NAMES), "e", 0)


def _seed_tables(data_dir) -> None:
    """Funding-domain rows that cross the thresholds (the funding assets' own tests prove how they are made)."""
    conn = connect_with_retry(str(data_dir / "warehouse.duckdb"))
    try:
        ensure_tables(conn, "funding_spreads", "opportunities", "basis", "funding_rates")
        spreads = pd.DataFrame(
            {
                "underlying": "BTC",
                "exchange_a": ["bybit", "bybit"],
                "symbol_a": "BTC/USDT:USDT",
                "exchange_b": ["hyperliquid", "okx"],
                "symbol_b": ["BTC/USDC:USDC", "BTC/USDT:USDT"],
                "ts": HOUR,
                "funding_spread_apr": [0.8, 0.1],
            }
        )
        opps = pd.DataFrame(
            {
                "as_of": HOUR,
                "strategy": ["perp_perp", "cash_carry"],
                "underlying": "BTC",
                "long_exchange": ["hyperliquid", "bybit"],
                "long_symbol": ["BTC/USDC:USDC", "BTC/USDT"],
                "short_exchange": "bybit",
                "short_symbol": "BTC/USDT:USDT",
                "net_carry_apr": [0.35, 0.05],
                "horizon_h": 168,
                "break_even_h": [20.0, 90.0],
                "half_life_h": [30.0, 10.0],
                "rank": [1, 2],
            }
        )
        basis = pd.DataFrame(
            {
                "exchange": "bybit",
                "symbol": "BTC/USDT:USDT",
                "timeframe": ["1m", "1m"],
                "ts": [HOUR, HOUR + pd.Timedelta(minutes=1)],
                "spot_symbol": "BTC/USDT",
                "basis_bps": [10.0, 75.0],
            }
        )
        dupes = pd.DataFrame(
            {"exchange": ["bybit"] * 2, "symbol": "BTC/USDT:USDT", "funding_ts": HOUR, "funding_rate": 1e-4}
        )
        for table, frame in (
            ("funding_spreads", spreads),
            ("opportunities", opps),
            ("basis", basis),
            ("funding_rates", dupes),
        ):
            with registered(conn, "seed", frame):
                conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM seed")
    finally:
        conn.close()


@pytest.fixture
def warehouse(tmp_path):
    _land(tmp_path)
    channels = AlertChannelsResource(jsonl_path="-", log=False)
    result = materialize(
        [raw_tickers, capture_events],
        resources=_resources(tmp_path, channels),
        tags={RANGE_START: "2026-03-01-10:00", RANGE_END: "2026-03-01-10:00"},
    )
    assert result.success
    _seed_tables(tmp_path)
    instance = DagsterInstance.ephemeral()
    # The blocking uniqueness check fails on the duplicated settlement and is recorded in the instance.
    checked = materialize(
        [funding_rates, funding_rates_has_unique_keys],
        resources=_resources(tmp_path, channels),
        selection=AssetSelection.checks(funding_rates_has_unique_keys),
        instance=instance,
        raise_on_error=False,
    )
    assert not checked.success  # a blocking check with ERROR severity fails its step
    assert [e.passed for e in checked.get_asset_check_evaluations()] == [False]
    return tmp_path, instance


def _materialize_alerts(data_dir, instance, channels, config=None):
    result = materialize(
        [alerts, funding_rates, funding_rates_has_unique_keys, *ALERT_CHECKS],
        resources=_resources(data_dir, channels),
        selection=AssetSelection.assets(alerts) | AssetSelection.checks(*ALERT_CHECKS),
        instance=instance,
        run_config={"ops": {"alerts": {"config": config or {"stale_limit_s": {"tickers": 600.0}}}}},
    )
    assert result.success
    return result


def test_every_rule_raises_once_and_is_delivered_to_log_jsonl_and_webhook(warehouse):
    data_dir, instance = warehouse
    jsonl = data_dir / "out" / "alerts.jsonl"
    with _Server(fail_first=1) as server:
        channels = AlertChannelsResource(jsonl_path=str(jsonl), webhook_url=server.url, backoff_s=0.01)
        result = _materialize_alerts(data_dir, instance, channels)
    raised = query(data_dir, "SELECT * FROM alerts ORDER BY rule")
    assert set(raised["rule"]) == RULES and len(raised) == len(RULES)
    by_rule = raised.set_index("rule")
    assert by_rule.loc["funding_spread", "value"] == pytest.approx(0.8)
    assert "hyperliquid" in by_rule.loc["funding_spread", "subject"]
    assert by_rule.loc["carry", "value"] == pytest.approx(0.35)
    assert by_rule.loc["basis_dislocation", "value"] == pytest.approx(75.0)
    assert by_rule.loc["stream_gap", "subject"] == "bybit:BTC/USDT trades" and by_rule.loc["stream_gap", "value"] == 600
    assert by_rule.loc["stream_stale", "subject"] == "okx:ETH/USDT:USDT tickers"
    assert by_rule.loc["stream_stale", "value"] == pytest.approx(40 * 60 - 10 + 10, abs=11)
    assert by_rule.loc["asset_check_failed", "severity"] == "critical"
    assert by_rule.loc["asset_check_failed", "subject"] == "funding_rates.funding_rates_has_unique_keys"
    # delivered: one JSONL line and one webhook body per alert; the webhook needed a retry for the first
    assert sorted(json.loads(line)["alert_id"] for line in jsonl.read_text().splitlines()) == sorted(raised["alert_id"])
    assert sorted(body["alert_id"] for body in server.bodies) == sorted(raised["alert_id"])
    deliveries = query(data_dir, "SELECT channel, ok, attempts FROM alert_deliveries")
    assert len(deliveries) == 3 * len(RULES) and deliveries["ok"].all()
    assert deliveries.loc[deliveries.channel == "webhook", "attempts"].max() == 2
    meta = result.asset_materializations_for_node("alerts")[0].metadata
    assert meta["raised"].value == len(RULES)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_a_second_run_inside_the_cooldown_raises_nothing_new(warehouse):
    data_dir, instance = warehouse
    channels = AlertChannelsResource(jsonl_path=str(data_dir / "a.jsonl"))
    _materialize_alerts(data_dir, instance, channels)
    again = _materialize_alerts(data_dir, instance, channels)
    meta = again.asset_materializations_for_node("alerts")[0].metadata
    assert meta["raised"].value == 0 and meta["suppressed_by_cooldown"].value == len(RULES)
    assert query(data_dir, "SELECT count(*) AS n FROM alerts")["n"].iloc[0] == len(RULES)
    assert len((data_dir / "a.jsonl").read_text().splitlines()) == len(RULES)


def test_a_dead_webhook_is_retried_recorded_and_does_not_fail_the_run(warehouse):
    data_dir, instance = warehouse
    with _Server(fail_first=10_000) as server:
        channels = AlertChannelsResource(jsonl_path="-", webhook_url=server.url, retries=2, backoff_s=0.0)
        result = _materialize_alerts(data_dir, instance, channels)
    failed = query(data_dir, "SELECT * FROM alert_deliveries WHERE NOT ok")
    assert len(failed) == len(RULES) and (failed["attempts"] == 2).all() and (failed["channel"] == "webhook").all()
    assert server.attempts == 2 * len(RULES)
    assert "secret" not in " ".join(failed["error"])
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"alerts_has_unique_ids": True, "alerts_are_delivered": False}


def test_webhook_url_comes_from_the_environment_when_not_configured(monkeypatch):
    monkeypatch.setenv("FUNDARB_WEBHOOK_URL", "http://127.0.0.1:1/hook")
    names = [c.name for c in AlertChannelsResource(jsonl_path="-").channels()]
    assert names == ["log", "webhook"]
    monkeypatch.delenv("FUNDARB_WEBHOOK_URL")
    assert [c.name for c in AlertChannelsResource(jsonl_path="-").channels()] == ["log"]


def test_wall_clock_staleness_flags_every_stream_of_old_data_and_jsonl_defaults_to_the_data_dir(warehouse):
    data_dir, instance = warehouse
    channels = AlertChannelsResource(log=False)
    config = {"stale_limit_s": {"tickers": 600.0}, "stale_clock": "wall", "check_failures": False}
    _materialize_alerts(data_dir, instance, channels, config)
    stale = query(data_dir, "SELECT subject, value FROM alerts WHERE rule = 'stream_stale' ORDER BY subject")
    assert stale["subject"].tolist() == [f"{e}:{s} tickers" for e, s in sorted(NAMES.values())]
    assert (stale["value"] > 200 * 86400).all()  # the landed hour is months before the wall clock
    lines = (data_dir / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == len(query(data_dir, "SELECT * FROM alerts"))
