"""Leverage tiers as a point-in-time table, the tier lookup at tier edges, and liquidation prices in risk from
the tier a leg's notional falls in (against the venue side's own formula, `execution/tiers.py`)."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from fundarb_dagster.core import risk
from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.execution import tiers as venue_tiers
from fundarb_dagster.core.leverage_tiers import merge_history, tier_for, tier_rows, valid_at
from fundarb_dagster.core.sources.sim import SimExchange

T0 = pd.Timestamp("2026-11-01 00:00")


def sim_tiers(symbol: str = "BTC/USDT:USDT") -> list[dict]:
    async def fetch() -> list[dict]:
        ex = SimExchange("binance", SimConfig(start="2026-11-01T00:00:00Z"), symbols=[symbol])
        await ex.load_markets()
        return (await ex.fetch_leverage_tiers([symbol]))[symbol]

    return asyncio.run(fetch())


def test_rows_from_the_simulator_structures_and_the_tier_at_each_edge() -> None:
    structures = sim_tiers()
    rows = tier_rows("binance", "BTC/USDT:USDT", structures)
    # binance BTC: 50 k at 0.4 %, then 600 k at 0.5 %, then 3 M at 0.65 % (the modelled schedule)
    assert rows[["max_notional", "mmr"]].head(3).values.tolist() == [[50_000, 0.004], [600_000, 0.005],
                                                                       [3_000_000, 0.0065]]  # fmt: skip
    # cum_k = cum_{k-1} + floor_k x (mmr_k - mmr_{k-1}), by hand
    assert rows["maintenance_amount"].head(3).tolist() == pytest.approx([0.0, 50.0, 50 + 600_000 * 0.0015])
    assert rows["maintenance_amount"].tolist() == pytest.approx([float(t["info"]["cum"]) for t in structures])
    assert tier_for(rows, 50_000)["tier"] == 1  # exactly at the top of tier 1: still tier 1
    assert tier_for(rows, 50_000.01)["tier"] == 2
    assert tier_for(rows, -600_000)["tier"] == 2  # a short's notional counts by size
    assert tier_for(rows, 600_000.01)["tier"] == 3
    assert tier_for(rows, 1e12)["tier"] == rows["tier"].max()  # past the top: the top tier
    for edge in (50_000.0, 600_000.0, 3_000_000.0):  # the maintenance margin is continuous across each edge
        below, above = tier_for(rows, edge), tier_for(rows, edge + 1e-6)
        assert edge * below["mmr"] - below["maintenance_amount"] == pytest.approx(
            edge * above["mmr"] - above["maintenance_amount"], abs=1e-5
        )


@pytest.mark.parametrize("notional", [40_000.0, 50_000.0, 50_001.0, 599_999.0, 600_001.0, 2_500_000.0])
@pytest.mark.parametrize("side", [1, -1])
def test_risk_liquidation_prices_use_the_tier_of_the_notional(notional: float, side: int) -> None:
    structures = sim_tiers()
    rows = tier_rows("binance", "BTC/USDT:USDT", structures).assign(valid_from=T0, valid_to=pd.NaT)
    mark = entry = 100_000.0
    units = side * notional / mark
    wallet = notional / 10  # 10x
    book = pd.DataFrame([{"pair": "p", "leg": 0, "exchange": "binance", "symbol": "BTC/USDT:USDT",
                          "underlying": "BTC", "kind": "perp", "units": units, "entry_price": entry,
                          "mark_price": mark, "wallet_usd": wallet, "mmr": 0.004, "taker_fee": 0.0}])  # fmt: skip
    tiered = risk.apply_tiers(book, valid_at(rows, T0 + pd.Timedelta(hours=1)))
    assert tiered["mmr_source"].tolist() == ["tiers"]
    distance = float(risk.liquidation_distance(tiered).iloc[0])
    liq = mark * (1 - distance) if side > 0 else mark * (1 + distance)
    want = venue_tiers.liquidation_price(structures, side, abs(units), entry, wallet, mark)
    assert liq == pytest.approx(want, rel=1e-12)
    flat = float(risk.liquidation_distance(book).iloc[0])
    if notional > 1_000_000:  # deep in tier 3: the flat base rate would put liquidation further away
        assert distance < flat - 0.001
    elif notional <= 50_000:
        assert distance == pytest.approx(flat, rel=1e-12)  # the base tier is the flat rate


def test_a_changed_schedule_closes_the_old_interval_and_reads_are_point_in_time() -> None:
    old = tier_rows("binance", "BTC/USDT:USDT", sim_tiers())
    first = merge_history(pd.DataFrame(), old, T0)
    assert first["valid_from"].eq(T0).all() and first["valid_to"].isna().all()
    assert merge_history(first, old, T0 + pd.Timedelta(days=1)).equals(first)  # the same schedule: no change
    new = old.copy()
    new.loc[0, "mmr"] = 0.005  # the venue raised the base tier's rate
    t1 = T0 + pd.Timedelta(days=2)
    second = merge_history(first, new, t1)
    assert len(second) == 2 * len(old)
    assert (second[second["valid_from"] == T0]["valid_to"] == t1).all()
    assert second[second["valid_from"] == t1]["valid_to"].isna().all()
    assert tier_for(valid_at(second, t1 - pd.Timedelta(seconds=1)), 1_000)["mmr"] == 0.004
    assert tier_for(valid_at(second, t1), 1_000)["mmr"] == 0.005
    assert valid_at(second, T0 - pd.Timedelta(seconds=1)).empty  # before anything was fetched
