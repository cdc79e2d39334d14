"""Fees by venue, tier and date: the entry in force at a trade's time, at the edges of its validity."""

from __future__ import annotations

import numpy as np
import pytest

from fundarb_dagster.core.fees import FeeEntry, FeeTable
from fundarb_dagster.core.venues import fees_bps

JAN, JUN = 1_767_225_600_000, 1_780_272_000_000  # 2026-01-01, 2026-06-01 (UTC, ms)
TABLE = FeeTable(
    (
        FeeEntry("binance", "vip0", "perp", 2.0, 5.0, JAN),
        FeeEntry("binance", "vip0", "perp", 1.8, 4.5, JUN),
        FeeEntry("binance", "vip3", "perp", -0.5, 3.0, JAN),  # a maker rebate at a higher tier
        FeeEntry("binance", "vip0", "spot", 9.0, 9.5, JUN),
    )
)


def test_the_entry_in_force_changes_exactly_at_valid_from():
    assert TABLE.fee_at("binance", "perp", JUN - 1) == (2.0, 5.0, "config")
    assert TABLE.fee_at("binance", "perp", JUN) == (1.8, 4.5, "config")
    assert TABLE.fee_at("binance", "swap", JAN) == (2.0, 5.0, "config")  # ccxt's word for a perp
    base = fees_bps("binance")
    assert TABLE.fee_at("binance", "perp", JAN - 1) == (base.perp_maker, base.perp_taker, "venue_default")
    maker, taker, source = TABLE.paths("binance", "spot", np.array([JAN, JUN - 1, JUN, JUN + 1]))
    np.testing.assert_array_equal(taker, [base.spot_taker, base.spot_taker, 9.5, 9.5])
    assert source == ["venue_default", "venue_default", "config", "config"]


def test_the_account_tier_picks_its_schedule_and_others_fall_back():
    vip3 = FeeTable(TABLE.entries, {"binance": "vip3"})
    assert vip3.fee_at("binance", "perp", JUN) == (-0.5, 3.0, "config")
    # no vip3 spot entry, and no entry at all for bybit: the venues' base fees
    assert vip3.fee_at("binance", "spot", JUN)[2] == "venue_default"
    assert TABLE.fee_at("bybit", "perp", JUN) == (fees_bps("bybit").perp_maker, fees_bps("bybit").perp_taker,
                                                  "venue_default")  # fmt: skip


@pytest.mark.parametrize("at,taker", [(JUN - 1, 5.0), (JUN, 4.5)])
def test_opportunities_take_the_fee_in_force_at_as_of(at, taker):
    from fundarb_dagster.core.opportunities import FeeSchedule

    schedule = FeeSchedule(dated=TABLE, at_ms=at)
    assert schedule.fee_bps("binance", "swap") == taker
    assert schedule.fee_bps("bybit", "swap") == FeeSchedule().fee_bps("bybit", "swap")  # no dated entry
