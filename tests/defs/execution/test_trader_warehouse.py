"""From a trader's run to the execution tables: `fundarb trade` on the simulator (binance 8h, hyperliquid 1h),
the market data beside it (the venues' settled funding history as `fundarb history` lands it, and the streamed
funding snapshots the capture lands), then real materializations of the funding and execution domains.

Every settlement at which the trader held a perp reconciles: booked equals the model (settled rate x the
position from the trader's fills x the venue's reference price: the mark on binance, hyperliquid's oracle from
the streamed snapshot) within a cent, and the blocking check passes; the live P&L's funding equals the venue's
payments."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.config import ExchangeConfig
from fundarb_dagster.core.execution.ledger import read_landed
from fundarb_dagster.core.history import pull_history
from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.execution import assets, checks
from fundarb_dagster.defs.funding.assets import funding_intervals, funding_predictions, funding_rates
from fundarb_dagster.defs.raw.assets import instruments, raw_funding
from fundarb_dagster.defs.resources import AlertChannelsResource, DataDirResource, SourceConfigResource
from tests.core.execution.trading import capture_in_process, stepped, trade_config

pytestmark = pytest.mark.slow
HOURS = 30
VENUES = ("binance", "hyperliquid")


def iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms").strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_key(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms").strftime("%Y-%m-%d-%H:00")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir: Path = tmp_path_factory.mktemp("traded")
    config = trade_config(data_dir, "perp_perp", VENUES, enter_apr=0.05, exit_apr=0.01)
    trader, _ = stepped(config, HOURS)
    start = config.sim.start_ms
    end = start + HOURS * HOUR_MS
    # the venues' settled funding, fetched once the period is over (the sim's clock pinned at its end)
    pinned = replace(config, sim=replace(config.sim, now=iso(end)))
    pull_history(pinned, start - 8 * HOUR_MS, end, streams=("funding",), progress=None)
    # the funding stream beside the trader: hyperliquid's oracle price at each settlement is only streamed
    perps = tuple(ExchangeConfig(id=e.id, symbols=tuple(s for s in e.symbols if ":" in s)) for e in config.exchanges)
    streamed = replace(config, exchanges=perps, sim=replace(config.sim, speed=30_000.0))
    asyncio.run(capture_in_process(streamed, data_dir, HOURS, ("funding",)))

    resources = {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(data_dir)),
        "alert_channels": AlertChannelsResource(),
        "source": SourceConfigResource(),
    }
    hours = {
        "dagster/asset_partition_range_start": hour_key(start),
        "dagster/asset_partition_range_end": hour_key(end - HOUR_MS),
    }
    assert materialize([instruments], resources=resources).success
    assert materialize(
        [raw_funding, *(getattr(assets, n) for n in assets.LANDED)], resources=resources, tags=hours
    ).success
    no_market = {"ops": {"funding_intervals": {"config": {"use_market_info": False}}}}
    assert materialize([funding_intervals], resources=resources, run_config=no_market).success
    assert materialize([funding_predictions, funding_rates], resources=resources, tags=hours).success
    result = materialize(
        [assets.funding_reconciliation, checks.funding_reconciliation_matches_the_venue, assets.live_pnl],
        resources=resources,
        tags=hours,
        raise_on_error=False,
    )
    return {"data_dir": data_dir, "result": result, "trader": trader, "start": start, "end": end}


def query(data_dir: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql).df()


def test_every_settlement_with_a_position_reconciles_to_the_cent(warehouse: dict) -> None:
    rows = query(warehouse["data_dir"], "SELECT * FROM funding_reconciliation ORDER BY exchange, symbol, funding_ts")
    assert set(rows["exchange"]) == set(VENUES)  # an 8h and a 1h venue were held through settlements
    bad = rows[rows["status"] != "ok"]
    assert bad.empty, bad[["exchange", "symbol", "funding_ts", "expected_usd", "booked_usd", "explanation"]]
    assert (rows["difference_usd"].abs() <= 0.01).all()
    assert (rows["units"].abs() > 0).all()
    # every payment the trader landed is one reconciled row (the window's edges excepted)
    payments = read_landed(warehouse["data_dir"], "funding_payments", "trader-trader")
    inside = payments[(payments["ts_ms"] >= warehouse["start"]) & (payments["ts_ms"] < warehouse["end"])]
    assert len(rows) == len(inside)
    assert rows["booked_usd"].sum() == pytest.approx(float(np.sum(inside["amount"])), abs=1e-9)


def test_hyperliquid_is_reconciled_on_its_oracle_price_as_streamed(warehouse: dict) -> None:
    rows = query(
        warehouse["data_dir"],
        """
        SELECT r.funding_ts_ms, r.ref_price, r.booked_usd, r.expected_usd, s.index_price, s.mark_price
        FROM (SELECT * FROM funding_reconciliation WHERE exchange = 'hyperliquid') AS r
        ASOF JOIN (SELECT * FROM raw_funding WHERE exchange = 'hyperliquid' AND is_settled = 0) AS s
            ON s.symbol = r.symbol AND r.funding_ts_ms >= s.ts_ms
        """,
    )
    assert len(rows) >= 2
    assert rows["ref_price"].tolist() == rows["index_price"].tolist()  # the oracle, not the mark
    assert (rows["index_price"] != rows["mark_price"]).all()


def test_the_blocking_check_passes_and_the_assets_materialized(warehouse: dict) -> None:
    result = warehouse["result"]
    assert result.success
    assert [e.passed for e in result.get_asset_check_evaluations()] == [True]


def test_live_pnl_funding_is_what_the_venues_paid(warehouse: dict) -> None:
    pnl = query(warehouse["data_dir"], "SELECT * FROM live_pnl ORDER BY ts")
    paid = query(warehouse["data_dir"], "SELECT sum(amount) AS usd FROM funding_payments")["usd"][0]
    # live_pnl's rows are as of each hour's start: the last row holds what was paid up to it (a settlement on
    # the hour included)
    before = query(
        warehouse["data_dir"],
        f"SELECT sum(amount) AS usd FROM funding_payments WHERE ts_ms <= {int(pnl['ts'].iloc[-1].value // 1_000_000)}",
    )["usd"][0]
    assert pnl["funding_usd"].iloc[-1] == pytest.approx(before, abs=1e-9)
    assert abs(paid) > 0
    assert (pnl["open_legs"] >= 0).all() and pnl["gross_exposure_usd"].max() > 0
