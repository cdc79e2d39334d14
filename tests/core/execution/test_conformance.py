"""One scenario through every venue kind the trader speaks to (`protocol.PrivateVenue`): the simulator in
process, the simulator behind `fundarb sim-venue`'s socket (`venue_server.RemoteExchange`), and a paper venue
over a replay. Each answers ccxt's method names with ccxt's unified structures and ccxt's errors.
(The live kind is the real ccxt class: its request path is `test_live.py`'s.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import ccxt
import pytest

from fundarb_dagster.core.config import ExchangeConfig, SimConfig, default_config
from fundarb_dagster.core.execution.paper import PaperExchange
from fundarb_dagster.core.execution.protocol import PRIVATE_HAS, PRIVATE_METHODS
from fundarb_dagster.core.execution.venue_server import connect, serve, wait_ready
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.replay import ReplayExchange
from fundarb_dagster.core.sources.sim import SimExchange

from .trading import capture_in_process

PERP = "BTC/USDT:USDT"
AMOUNT = 0.05


@asynccontextmanager
async def sim_venue(tmp: Path) -> AsyncIterator[Any]:
    yield SimExchange("binance", SimConfig(now="2026-11-01T01:00:00Z"))


@asynccontextmanager
async def remote_venue(tmp: Path) -> AsyncIterator[Any]:
    config = replace(default_config(data_dir=str(tmp)), sim=SimConfig(speed=60.0))
    socket, stop = tmp / "venue.sock", asyncio.Event()
    server = asyncio.create_task(serve(config, socket, stop))
    await asyncio.to_thread(wait_ready, socket)
    venue = connect(socket, ["binance"])["binance"]
    try:
        yield venue
    finally:
        await venue.close()
        stop.set()
        await server


@asynccontextmanager
async def paper_venue(tmp: Path) -> AsyncIterator[Any]:
    recorded = tmp / "recorded"
    config = replace(
        default_config(data_dir=str(recorded)),
        exchanges=(ExchangeConfig(id="binance", symbols=(PERP,)),),
        sim=SimConfig(speed=7200.0),
    )
    await capture_in_process(config, recorded, 2, ("tickers", "funding"))
    source = ReplayExchange("binance", recorded, format="landing", speed=600.0)
    venue = PaperExchange(source, InstrumentRegistry(), (PERP,), {"USDT": 100_000.0})
    try:
        yield venue
    finally:
        await venue.close()


KINDS: dict[str, Callable[[Path], Any]] = {"sim": sim_venue, "sim-venue": remote_venue, "paper": paper_venue}


async def scenario(venue: Any) -> dict[str, Any]:
    """Enter a short perp with a client id, find it every way the trader does, then close it reduce-only."""
    markets = await venue.load_markets()
    await venue.fetch_ticker(PERP)  # a paper venue answers once its stream has a quote
    out: dict[str, Any] = {"markets": markets}
    out["margin"] = await venue.set_margin_mode("isolated", PERP)
    out["leverage"] = await venue.set_leverage(3, PERP)
    out["order"] = await venue.create_order(PERP, "market", "sell", AMOUNT, None, {"clientOrderId": "fa-conform-1"})
    out["by_client_id"] = await venue.fetch_order(None, PERP, {"clientOrderId": "fa-conform-1"})
    out["trades"] = await venue.fetch_my_trades(PERP)
    out["positions"] = await venue.fetch_positions([PERP])
    out["balance"] = await venue.fetch_balance()
    out["funding"] = await venue.fetch_funding_history(PERP)
    with pytest.raises(ccxt.OrderNotFound):
        await venue.cancel_order(None, PERP, {"clientOrderId": "fa-never-sent"})
    params = {"clientOrderId": "fa-conform-2", "reduceOnly": True}
    out["exit"] = await venue.create_order(PERP, "market", "buy", AMOUNT, None, params)
    out["after"] = await venue.fetch_positions([PERP])
    with pytest.raises(ccxt.InvalidOrder):  # nothing left to reduce: the venue's own reduce-only error
        await venue.create_order(
            PERP, "market", "buy", AMOUNT, None, {"clientOrderId": "fa-conform-3", "reduceOnly": True}
        )
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_venue_kind_speaks_ccxts_private_api_alike(kind: str, tmp_path: Path) -> None:
    async def run() -> tuple[Any, dict[str, Any]]:
        async with KINDS[kind](tmp_path) as venue:
            return venue, await scenario(venue)

    venue, got = asyncio.run(run())
    if kind != "sim-venue":  # the proxy forwards every name to the served venue
        assert all(callable(getattr(venue, name, None)) for name in PRIVATE_METHODS)
        assert all(venue.has.get(flag) for flag in PRIVATE_HAS)
    order = got["order"]
    assert order["clientOrderId"] == "fa-conform-1" and order["side"] == "sell" and order["type"] == "market"
    assert order["status"] == "closed" and order["filled"] == pytest.approx(AMOUNT) and order["average"] > 0
    assert got["by_client_id"]["id"] == order["id"]
    mine = [t for t in got["trades"] if t["order"] == order["id"]]
    assert sum(t["amount"] for t in mine) == pytest.approx(AMOUNT) and all(t["fee"]["cost"] > 0 for t in mine)
    (position,) = got["positions"]
    assert (position["side"], position["contracts"], position["marginMode"]) == (
        "short",
        pytest.approx(AMOUNT),
        "isolated",
    )
    assert position["leverage"] == 3
    assert {"free", "used", "total"} <= set(got["balance"]["USDT"])
    assert isinstance(got["funding"], list)
    assert got["exit"]["status"] == "closed" and got["exit"]["reduceOnly"] is True
    assert got["after"] == []
