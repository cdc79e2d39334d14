"""The carry assets in the code location: keys, dependencies, partitions, backfill policy, pool."""

from __future__ import annotations

from dagster import AssetKey, BackfillPolicy

from fundarb_dagster.definitions import build_definitions
from fundarb_dagster.defs.partitions import DAILY, HOURLY, TEMPLATE_PARTITIONS

defs = build_definitions(TEMPLATE_PARTITIONS)

EXPECTED_DEPS = {
    "funding_history": set(),
    "borrow_rates": set(),
    "funding_intervals": {"raw_funding", "funding_history"},
    "funding_predictions": {"raw_funding", "funding_intervals"},
    "funding_rates": {"raw_funding", "funding_history", "funding_intervals", "funding_predictions"},
    "basis": {"raw_tickers", "raw_ohlcv", "funding_intervals", "ohlcv_1m", "ohlcv_1h"},
    "funding_spreads": {"funding_rates", "funding_predictions", "basis"},
    "opportunities": {"funding_spreads", "funding_rates", "funding_predictions", "basis", "borrow_rates"},
    "alerts": {
        "funding_spreads",
        "opportunities",
        "basis",
        "capture_events",
        "raw_trades",
        "raw_tickers",
        "raw_funding",
    },
}


def test_carry_assets_have_the_documented_dependencies_partitions_and_pool():
    graph = defs.resolve_asset_graph()
    for name, deps in EXPECTED_DEPS.items():
        node = graph.get(AssetKey(name))
        assert {k.to_user_string() for k in node.parent_keys} == deps, name
        assert node.pools == {"duckdb"}, name
    for name in ("funding_predictions", "funding_rates", "basis", "funding_spreads"):
        node = graph.get(AssetKey(name))
        assert node.partitions_def == HOURLY
        assert node.backfill_policy == BackfillPolicy.multi_run(max_partitions_per_run=31 * 24)
    assert graph.get(AssetKey("funding_history")).partitions_def == DAILY
    assert graph.get(AssetKey("borrow_rates")).partitions_def == DAILY
    assert graph.get(AssetKey("opportunities")).partitions_def is None


def test_alert_channels_resource_is_registered():
    assert "alert_channels" in defs.resources
