"""The virtual clock and pacing of subscriptions."""

from __future__ import annotations

import time

from fundarb_dagster.core.sources.sim import SimExchange

from .common import START_MS, run, sim


# -- clock and pacing -----------------------------------------------------------------------------------
def test_virtual_clock_runs_at_speed_and_trades_never_come_from_the_future() -> None:
    wall0 = time.time() - 10.0
    ex = SimExchange("binance", sim(speed=100.0), wall_start=wall0)
    before = time.time()
    now = ex.milliseconds()
    after = time.time()
    assert START_MS + (before - wall0) * 100_000 - 1 <= now <= START_MS + (after - wall0) * 100_000 + 1

    async def go() -> list[tuple[int, int]]:
        out = []
        for _ in range(20):
            trades = await ex.watch_trades("ETH/USDT")
            out.append((trades[-1]["timestamp"], ex.milliseconds()))
        return out

    for last_ts, clock in run(go()):
        assert last_ts <= clock


def test_watch_waits_for_the_next_event_instead_of_returning_empty() -> None:
    ex = SimExchange("okx", sim(speed=50.0), ticker_interval_ms=1000)

    async def go() -> list[dict]:
        return [await ex.watch_ticker("BTC/USDT") for _ in range(4)]

    tickers = run(go())
    stamps = [t["timestamp"] for t in tickers]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # each call waited for a new tick
    assert all(s % 1000 == 0 for s in stamps)
