"""leverage_tiers materialized from the simulator's fetch_leverage_tiers, kept point in time, and the risk
report's stress computed with the tier each leg's notional falls in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from dagster import materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.backtest.synthetic import synthetic_panel
from fundarb_dagster.core.config import load_config
from fundarb_dagster.core.leverage_tiers import tier_rows
from fundarb_dagster.core.risk import apply_tiers, stress_book
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.defs.backtest.assets import backtest
from fundarb_dagster.defs.resources import AlertChannelsResource, DataDirResource, SourceConfigResource
from fundarb_dagster.defs.risk.assets import leverage_tiers, risk

from ..backtest.warehouse_inputs import write_inputs

PERPS = {"binance": ["BTC/USDT:USDT", "ETH/USDT:USDT"], "bybit": ["BTC/USDT:USDT", "ETH/USDT:USDT"],
         "hyperliquid": ["BTC/USDC:USDC", "ETH/USDC:USDC"]}  # fmt: skip


def resources(path: Path) -> dict:
    config = path.parent / "sim.yaml"
    config.write_text(yaml.safe_dump({
        "source": "sim", "data_dir": str(path.parent),
        # the sim's clock, when the tiers are fetched: before the synthetic panel's book (2025-01-01 + 15 days)
        "sim": {"start": "2024-12-01T00:00:00Z", "now": "2024-12-20T00:00:00Z"},
        "exchanges": [{"id": venue, "symbols": symbols} for venue, symbols in PERPS.items()],
    }))  # fmt: skip
    return {
        "duckdb": DuckDBResource(database=str(path)),
        "data_dir": DataDirResource(data_dir=str(path.parent)),
        "source": SourceConfigResource(config_path=str(config)),
        "alert_channels": AlertChannelsResource(),
    }


def test_tiers_land_point_in_time_and_the_stress_uses_them(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    res = resources(path)
    assert materialize([leverage_tiers], resources=res).success
    with duckdb.connect(str(path), read_only=True) as conn:
        first = conn.execute("SELECT * FROM leverage_tiers ORDER BY exchange, symbol, tier").df()
    config = load_config(res["source"].config_path)

    async def served(venue: str) -> dict:
        ex = SimExchange(venue, config.sim, symbols=PERPS[venue])
        await ex.load_markets()
        return await ex.fetch_leverage_tiers(PERPS[venue])

    want = pd.concat([tier_rows(v, s, rows) for v in PERPS for s, rows in asyncio.run(served(v)).items()])
    want = want.sort_values(["exchange", "symbol", "tier"], ignore_index=True)
    assert first[list(want.columns)].equals(want)
    assert first["valid_to"].isna().all() and (first["valid_from"] == pd.Timestamp("2024-12-20")).all()
    # fetched again, the same schedules: the table does not change (idempotent)
    assert materialize([leverage_tiers], resources=res).success
    with duckdb.connect(str(path), read_only=True) as conn:
        again = conn.execute("SELECT * FROM leverage_tiers ORDER BY exchange, symbol, tier").df()
    assert again.equals(first)

    # risk on a backtest's book: the stress is the core stress of the book with its legs' tiers applied
    write_inputs(synthetic_panel(24 * 15, seed=9), path)
    run = {"strategy": "perp_perp", "enter_apr": 0.03, "exit_apr": 0.0, "leverage": 6.0, "capital": 5_000_000.0}
    ran = materialize([backtest], resources=res, run_config={"ops": {"backtest": {"config": run}}})
    assert ran.success
    # the backtest liquidates each perp at its tiers (the schedules just fetched), not the flat rate
    margin = ran.asset_materializations_for_node("backtest")[0].metadata["margin_source"].value
    tiered = {f"{e} {s}": f"tiers ({len(g)})" for (e, s), g in first.groupby(["exchange", "symbol"])}
    assert {k: v for k, v in margin.items() if k in tiered} == tiered and set(margin.values()) - {"flat mmr"}
    shocks = [-0.3, -0.1, 0.1, 0.3]
    result = materialize([risk], resources=res, run_config={"ops": {"risk": {"config": {"shocks": shocks}}}})
    assert result.success
    with duckdb.connect(str(path), read_only=True) as conn:
        book = conn.execute("SELECT * FROM backtest_book").df()
        stress = conn.execute(
            "SELECT * FROM risk_stress WHERE report_id = $r ORDER BY pair, shock_pct", {"r": result.run_id}
        ).df()
    tiered = apply_tiers(book, first)
    perps = tiered[tiered["kind"] == "perp"]
    assert len(perps) and (perps["mmr_source"] == "tiers").all()
    assert (perps["mmr_cum"] > 0).any()  # 5 M of capital puts some legs beyond their base tier
    expected = stress_book(tiered, shocks).sort_values(["pair", "shock_pct"]).reset_index(drop=True)
    assert stress["margin_needed_usd"].tolist() == pytest.approx(expected["margin_needed_usd"].tolist())
    liq = expected["liq_price_first"].fillna(-1).tolist()
    assert stress["liq_price_first"].fillna(-1).tolist() == pytest.approx(liq)
    flat = stress_book(book, shocks).sort_values(["pair", "shock_pct"]).reset_index(drop=True)
    assert not flat["liq_price_first"].fillna(-1).equals(expected["liq_price_first"].fillna(-1))  # tiers matter
