"""The funding chain on the simulator: history back-filled from SimExchange, the interval change it publishes
(bybit SUI 8h -> 4h six days before the start) and its caps flow into funding_intervals and funding_rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import AssetSelection, DagsterInstance, materialize

from fundarb_dagster.core.sources.sim import VENUES
from fundarb_dagster.defs.funding import checks as funding_checks
from fundarb_dagster.defs.funding.assets import funding_history, funding_intervals, funding_rates
from tests.defs.funding.test_funding_assets import _resources
from tests.defs.raw.landing_fixtures import RANGE_END, RANGE_START, query

pytestmark = pytest.mark.slow  # real materializations of the whole chain: tens of seconds


START = "2026-11-01T00:00:00Z"
CHANGE = pd.Timestamp("2026-10-26")  # floor_day(start) - 6 days


@pytest.fixture(scope="module")
def sim_warehouse(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sim")
    config = {
        "source": "sim",
        "sim": {"start": START, "seed": 3},
        "exchanges": [
            {"id": "bybit", "symbols": ["SUI/USDT:USDT", "BTC/USDT:USDT"]},
            {"id": "hyperliquid", "symbols": ["BTC/USDC:USDC"]},
        ],
    }
    path = data_dir / "fundarb.yaml"
    path.write_text(yaml.safe_dump(config))
    resources = _resources(data_dir, str(path))
    instance = DagsterInstance.ephemeral()
    days = {RANGE_START: "2026-10-24", RANGE_END: "2026-10-28"}
    assert materialize([funding_history], resources=resources, tags=days, instance=instance).success
    assert materialize([funding_intervals], resources=resources, instance=instance).success
    hours = {RANGE_START: "2026-10-24-00:00", RANGE_END: "2026-10-28-23:00"}
    assert materialize([funding_rates], resources=resources, tags=hours, instance=instance).success
    checks = materialize(
        [funding_intervals, funding_rates, *funding_checks.FUNDING_CHECKS],
        resources=resources,
        selection=AssetSelection.checks(
            funding_checks.funding_rates_within_caps, funding_checks.funding_intervals_has_no_overlaps
        ),
        instance=instance,
    )
    return data_dir, checks


def test_sim_history_lands_every_settlement_of_the_days(sim_warehouse):
    data_dir, _ = sim_warehouse
    counts = query(data_dir, "SELECT exchange, symbol, count(*) AS n FROM funding_history GROUP BY ALL").set_index(
        ["exchange", "symbol"]
    )["n"]
    assert counts[("hyperliquid", "BTC/USDC:USDC")] == 5 * 24
    assert counts[("bybit", "BTC/USDT:USDT")] == 5 * 3
    # SUI: 8h for 2 days (6 settlements), then 4h for 3 days (18): the published change
    assert counts[("bybit", "SUI/USDT:USDT")] == 2 * 3 + 3 * 6


def test_interval_change_and_caps_come_from_the_published_market_info(sim_warehouse):
    data_dir, _ = sim_warehouse
    spans = query(data_dir, "SELECT * FROM funding_intervals WHERE symbol = 'SUI/USDT:USDT' ORDER BY valid_from")
    assert spans["interval_h"].tolist()[-2:] == [8.0, 4.0]
    assert abs(spans["valid_from"].iloc[-1] - CHANGE) <= pd.Timedelta(hours=1)
    cap = VENUES["bybit"].cap("SUI")
    assert spans["cap"].iloc[-1] == pytest.approx(cap) and spans["floor"].iloc[-1] == pytest.approx(-cap)


def test_rates_use_the_interval_in_force_at_each_settlement(sim_warehouse):
    data_dir, checks = sim_warehouse
    rates = query(data_dir, "SELECT * FROM funding_rates WHERE symbol = 'SUI/USDT:USDT' ORDER BY funding_ts")
    expected_interval = np.where(rates["funding_ts"] > CHANGE, 4.0, 8.0)
    np.testing.assert_array_equal(rates["interval_h"].to_numpy(), expected_interval)
    np.testing.assert_allclose(rates["funding_apr"], rates["funding_rate"] * 8760 / expected_interval, rtol=1e-12)
    gaps_h = rates["funding_ts"].diff().dt.total_seconds().dropna() / 3600
    np.testing.assert_array_equal(gaps_h.to_numpy(), expected_interval[1:])
    assert all(e.passed for e in checks.get_asset_check_evaluations())
