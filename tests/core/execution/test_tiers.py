"""Leverage tiers: maintenance amounts, tier edges and the isolated liquidation price, by hand."""

from __future__ import annotations

import pytest

from fundarb_dagster.core.execution.tiers import (
    TIER_SCHEDULES,
    liquidation_price,
    maintenance_amounts,
    maintenance_margin,
    max_notional_at,
    schedule_for,
    tier_at,
    tier_structures,
)
from fundarb_dagster.core.venues import VENUE_FACTS

BTC = tier_structures(schedule_for("binance", "BTC"), "BTC/USDT:USDT", "USDT", "BTCUSDT")


def test_maintenance_amounts_are_binance_cum_values() -> None:
    # binance's published BTCUSDT brackets state cum 0, 50, 950, 11 450, 131 450 for the first five
    amounts = [t["info"]["cum"] for t in BTC]
    assert amounts[:5] == [0.0, 50.0, 950.0, 11_450.0, 131_450.0]
    # cum_k = cum_{k-1} + floor_k x (mmr_k - mmr_{k-1}), written out for tier 6
    assert amounts[5] == pytest.approx(131_450.0 + 70_000_000 * (0.025 - 0.02))
    assert maintenance_amounts([(t["maxNotional"], t["maintenanceMarginRate"]) for t in BTC]) == amounts


def test_tier_lookup_at_the_edges_and_maintenance_is_continuous() -> None:
    assert tier_at(BTC, 50_000)[0]["tier"] == 1.0
    assert tier_at(BTC, 50_000.01)[0]["tier"] == 2.0
    assert tier_at(BTC, 10**12)[0]["tier"] == float(len(BTC))  # past the top: the last tier
    for edge in (50_000, 600_000, 3_000_000):
        below, above = maintenance_margin(BTC, edge), maintenance_margin(BTC, edge + 1e-6)
        assert above == pytest.approx(below, abs=1e-5)
    assert max_notional_at(BTC, 125) == 50_000 and max_notional_at(BTC, 20) == 100_000_000


def test_liquidation_price_matches_the_hand_formula_with_tier_mmr_and_amount() -> None:
    # a 2 BTC long at 60 000 (notional 120 000: tier 2, mmr 0.5 %, cum 50) with 6 000 margin
    q, entry, margin = 2.0, 60_000.0, 6_000.0
    hand = (margin + 50.0 - q * entry) / (q * 0.005 - q)
    assert liquidation_price(BTC, 1, q, entry, margin, mark=entry) == pytest.approx(hand)
    # at that price the equity equals the maintenance margin
    equity = margin + q * (hand - entry)
    assert equity == pytest.approx(q * hand * 0.005 - 50.0)
    # a short: price rises to (M + cum + Q E) / (Q mmr + Q)
    short = (margin + 50.0 + q * entry) / (q * 0.005 + q)
    assert liquidation_price(BTC, -1, q, entry, margin, mark=entry) == pytest.approx(short)


def test_each_venue_base_tier_is_its_row_maintenance_rate_and_schedules_ascend() -> None:
    for venue, by_class in TIER_SCHEDULES.items():
        assert by_class["major"][0].mmr == VENUE_FACTS[venue].maintenance_margin_rate
        for schedule in by_class.values():
            caps = [t.max_notional for t in schedule]
            assert caps == sorted(caps)
            assert [t.max_leverage for t in schedule] == sorted((t.max_leverage for t in schedule), reverse=True)
    assert schedule_for("binance", "1000PEPE") == TIER_SCHEDULES["binance"]["alt"]
    assert schedule_for("hyperliquid", "ETH") == TIER_SCHEDULES["hyperliquid"]["major"]
    assert schedule_for("kraken", "BTC") is None
