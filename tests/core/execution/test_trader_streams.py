"""The trader books orders and fills from the venues' private streams (`watch_orders`, `watch_my_trades`) where a
venue has them, and a dropped stream loses no fill.

Each run: a stepped cash-and-carry trader on binance and hyperliquid that enters in its first half-day, then is
switched to flatten at 12 h (the kill-switch file), so its exits are orders sent long after its streams came
up. REST calls are counted at the venue objects themselves (their `fetch_order` / `fetch_my_trades` wrapped),
fills checked against the trades the venues booked (their own matching engine's record, never the trader's)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fundarb_dagster.core.config import FaultConfig
from fundarb_dagster.core.execution.launch import TradeRun, check, open_trader
from fundarb_dagster.core.execution.ledger import decoded, read_landed
from fundarb_dagster.core.execution.recovery import recover
from fundarb_dagster.core.execution.trader import Trader, flatten_file
from fundarb_dagster.core.units import HOUR_MS

from .trading import trade_config, venue_trades

REST = ("fetch_order", "fetch_my_trades")
SWITCH_H, END_H = 12, 36


def run_counted(config: Any, streams: bool) -> tuple[Trader, Counter[str], Counter[str]]:
    """The run (see the module doc); REST calls per method over the whole run and while the venue streamed."""
    calls: Counter[str] = Counter()
    streaming_calls: Counter[str] = Counter()

    def counting(call: Any, method: str, venue: str) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[method] += 1
            if trader.streams.streaming(venue):
                streaming_calls[method] += 1
            return call(*args, **kwargs)

        return counted

    trader: Trader

    async def go() -> Trader:
        nonlocal trader
        run = TradeRun(venue="sim", stepped=True)
        trader = await open_trader(check(config, run), run, lambda _: None)
        for venue, ex in trader.gateway.exchanges.items():
            if not streams:  # a venue without the streams, as ccxt says it: `has['watchOrders']` false
                ex.has = {**ex.has, "watchOrders": False, "watchMyTrades": False}
            for method in REST:
                setattr(ex, method, counting(getattr(ex, method), method, venue))
        await recover(trader)
        switch = flatten_file(config.data_path, config.trade.name)
        switch_ms = config.sim.start_ms + SWITCH_H * HOUR_MS

        def stop() -> bool:
            if trader.clock.now() >= switch_ms and not switch.exists():
                switch.parent.mkdir(parents=True, exist_ok=True)
                switch.touch()
            return False

        try:
            await trader.run(until_ms=config.sim.start_ms + END_H * HOUR_MS, stop=stop)
        finally:
            await trader.gateway.close()
        return trader

    return asyncio.run(go()), calls, streaming_calls


def landed_fill_ids(config: Any) -> Counter[tuple[str, str, str]]:
    fills = read_landed(config.data_path, "fills", f"trader-{config.trade.name}")
    keys = zip(decoded(fills, "exchange"), decoded(fills, "symbol"), decoded(fills, "trade_id"), strict=True)
    return Counter(keys)


def venue_fill_ids(trader: Trader) -> Counter[tuple[str, str, str]]:
    return Counter((t.exchange, t.symbol, t.trade_id) for t in venue_trades(dict(trader.gateway.exchanges)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Trader, Counter[str], Counter[str], Any]]:
    out = {}
    for mode in ("streams", "polling"):
        config = trade_config(
            tmp_path_factory.mktemp(mode), "cash_carry", ("binance", "hyperliquid"), enter_apr=0.05, exit_apr=0.01
        )
        out[mode] = (*run_counted(config, streams=mode == "streams"), config)
    return out


def test_fills_are_booked_from_the_streams_without_a_rest_call_per_fill(runs: dict) -> None:
    trader, calls, streaming_calls, config = runs["streams"]
    venue = venue_fill_ids(trader)
    exits = [
        t for t in venue_trades(dict(trader.gateway.exchanges)) if t.ts_ms >= config.sim.start_ms + SWITCH_H * HOUR_MS
    ]
    assert exits, "the flatten sent orders after the streams came up"
    # every fill the venues made is landed once, and those made while the venue streamed came from the stream
    assert landed_fill_ids(config) == venue and all(n == 1 for n in venue.values())
    assert trader.counters.fills == len(venue)
    assert trader.counters.fills_streamed >= len(exits)
    # steady state: not one REST call for an order's status or its fills while the venue streamed
    assert streaming_calls == Counter(), streaming_calls
    # the REST calls made at all are the catch-ups (one look at each leg's trades per venue's streams coming up)
    # and the polling before them, far fewer than one per fill
    assert calls["fetch_my_trades"] < len(venue)

    # the same run on venues without the streams polls: at least one fetch_my_trades per filled order
    polled, polled_calls, polled_streaming, polled_config = runs["polling"]
    assert polled.counters.fills_streamed == 0 and polled_streaming == Counter()
    filled_orders = {t.client_id for t in venue_trades(dict(polled.gateway.exchanges))}
    assert polled_calls["fetch_my_trades"] >= len(filled_orders) > 0
    # and books the same fills: the streams change how the trader learns of them, not what it trades
    assert landed_fill_ids(polled_config) == venue_fill_ids(polled)
    assert sorted(venue_fill_ids(polled)) == sorted(venue)


def test_a_dropped_stream_loses_no_fill(tmp_path: Path) -> None:
    # the simulator's `disconnect` fault drops the connection after placing an order: its private streams break
    # (their next call raises ccxt.NetworkError) and what happened meanwhile is never sent on them
    faults = FaultConfig(order_disconnect_rate=0.2)
    config = trade_config(tmp_path, "cash_carry", ("binance", "hyperliquid"), faults, enter_apr=0.05, exit_apr=0.01)
    trader, _, _ = run_counted(config, streams=True)
    exchanges = dict(trader.gateway.exchanges)
    lost_trades = sum(n for ex in exchanges.values() for (kind, _), n in ex.private.lost.items() if kind == "trade")
    assert sum(trader.streams.errors.values()) > 0 and lost_trades > 0, "the streams broke and missed trades"
    venue = venue_fill_ids(trader)
    assert landed_fill_ids(config) == venue and all(n == 1 for n in venue.values())  # none lost, none doubled
    # some fills came on the streams, the ones a broken stream never sent were fetched (polling, or late)
    assert 0 < trader.counters.fills_streamed < trader.counters.fills == len(venue)
    assert trader.counters.notes["fills_fetched_late"] > 0
    assert trader.flat()
