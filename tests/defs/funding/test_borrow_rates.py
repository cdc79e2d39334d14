"""borrow_rates materialized from the simulator: the day's rates as SimExchange serves them, venues without
borrowing skipped, and the opportunities' as-of query equal to the pandas point-in-time lookup."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
import yaml
from dagster import DagsterInstance, materialize

from fundarb_dagster.core.borrow import borrow_rows, rates_as_of
from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sql import execute, load_sql
from fundarb_dagster.defs.funding.assets import borrow_rates
from tests.defs.funding.test_funding_assets import _resources
from tests.defs.raw.landing_fixtures import query

START = "2026-11-01T00:00:00Z"
DAY = pd.Timestamp("2026-10-30")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("borrow")
    config = {
        "source": "sim",
        "sim": {"start": START, "seed": 3},
        "exchanges": [
            {"id": "binance", "symbols": ["ETH/USDT", "ETH/USDT:USDT", "SOL/USDT"]},
            {"id": "hyperliquid", "symbols": ["BTC/USDC", "BTC/USDC:USDC"]},
        ],
    }
    path = data_dir / "fundarb.yaml"
    path.write_text(yaml.safe_dump(config))
    result = materialize(
        [borrow_rates], resources=_resources(data_dir, str(path)), partition_key=f"{DAY:%Y-%m-%d}",
        instance=DagsterInstance.ephemeral(),
    )  # fmt: skip
    assert result.success
    return data_dir, result.asset_materializations_for_node("borrow_rates")[0].metadata


def test_the_day_holds_every_hourly_rate_the_sim_serves(warehouse):
    data_dir, metadata = warehouse
    got = query(data_dir, "SELECT * FROM borrow_rates ORDER BY exchange, currency, ts")
    assert sorted(set(got["currency"])) == ["ETH", "SOL"] and set(got["exchange"]) == {"binance"}
    assert metadata["skipped"].value == ["hyperliquid"]  # it lends nothing, like the real venue
    start_ms = int(DAY.value // 10**6)
    ex = SimExchange("binance", SimConfig(start=START, seed=3))
    for currency in ("ETH", "SOL"):
        served = asyncio.run(ex.fetch_borrow_rate_history(currency, start_ms, 24, {"until": start_ms + 86_400_000 - 1}))
        expected = borrow_rows("binance", served)
        own = got[got["currency"] == currency].reset_index(drop=True)
        assert len(own) == 24
        pd.testing.assert_series_equal(own["borrow_apr"], expected["borrow_apr"], check_names=False, rtol=1e-12)
        assert (own["ts"] == expected["ts"]).all() and (own["source"] == "sim").all()


def test_the_as_of_query_is_the_point_in_time_lookup(warehouse):
    import duckdb

    data_dir, _ = warehouse
    rows = query(data_dir, "SELECT * FROM borrow_rates")
    for as_of in (DAY + pd.Timedelta(hours=5), DAY + pd.Timedelta(hours=5, minutes=59), DAY + pd.Timedelta(days=2)):
        params = {"since": (as_of - pd.Timedelta(hours=48)).to_pydatetime(), "as_of": as_of.to_pydatetime()}
        with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
            got = execute(conn, load_sql("funding", "opportunity_inputs_borrow"), params).df()
        got = got.sort_values(["exchange", "currency"], ignore_index=True)
        expected = rates_as_of(rows, as_of)
        assert got["currency"].tolist() == expected["asset"].tolist() == ["ETH", "SOL"]
        pd.testing.assert_series_equal(got["borrow_apr"], expected["borrow_apr"], check_names=False)
        assert (got["ts"] == expected["ts"]).all()
