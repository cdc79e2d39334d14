"""The trader on the simulator: decision-to-both-legs-filled latency, orders per second, CPU per decision.

1. Latency. The venues run in their own process (`fundarb sim-venue`, clock at speed 1: the venue's order
   latency is real time, binance's ~20 ms each way); the trader reaches them over the socket, as `fundarb trade
   --venue-socket` does. Each round is one decision of the binance BTC cash-and-carry pair (enter, then exit),
   from the decision to both legs filled, run two ways interleaved: both legs sent at once (the trader's way)
   and one after the other (the obvious alternative). Side by side: the venue's own round trip for the orders
   (2 x the one-way latency it drew, from its arrival stamps), i.e. what no trader can beat.
2. Orders per second the trader sustains: the same rounds against an in-process venue whose latency is
   nothing (clock pinned), next to the same orders sent straight to the venue's `create_order` (no trader).
3. CPU per decision: `Trader.decide` (observe, signal, targets, both risk phases, the decisions fed) over a
   stepped multi-day run of all three venues' pairs.

    python -m benchmarks.bench_trader            # 200 latency rounds per way, 2000 throughput rounds, 7 days
    python -m benchmarks.bench_trader --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.harness import load  # noqa: E402
from fundarb_dagster.core.config import ExchangeConfig, FundarbConfig, default_config  # noqa: E402
from fundarb_dagster.core.execution.ids import decision_id  # noqa: E402
from fundarb_dagster.core.execution.launch import TradeRun, check, open_trader  # noqa: E402
from fundarb_dagster.core.execution.machine import Decide, Phase, Tick  # noqa: E402
from fundarb_dagster.core.execution.trader import Trader  # noqa: E402
from fundarb_dagster.core.execution.venue_server import SHUTDOWN, wait_ready  # noqa: E402
from fundarb_dagster.core.sources.sim import SimExchange  # noqa: E402
from fundarb_dagster.core.units import HOUR_MS  # noqa: E402

PAIR_SYMBOLS = ("BTC/USDT", "BTC/USDT:USDT")


def bench_config(data_dir: Path, speed: float, exchanges: tuple[str, ...] = ("binance",)) -> FundarbConfig:
    config = default_config()
    venues = tuple(
        ExchangeConfig(id=e.id, symbols=PAIR_SYMBOLS if exchanges == ("binance",) else e.symbols)
        for e in config.exchanges
        if e.id in exchanges
    )
    trade = replace(config.trade, strategy="cash_carry", progress_interval_s=1e9, poll_interval_s=0.001)
    return replace(config, data_dir=str(data_dir), exchanges=venues, sim=replace(config.sim, speed=speed), trade=trade)


async def one_round(trader: Trader, k: int) -> tuple[float, float]:
    """One decision of the first pair (enter on even rounds, exit on odd): wall seconds and CPU seconds until
    both legs have filled and the pair is idle."""
    spec = trader.specs[0]
    name = spec.name
    q = 0.01
    target = (-q, q) if k % 2 == 0 else (0.0, 0.0)
    now = trader.clock.now()
    t0, c0 = time.perf_counter(), time.process_time()
    await trader.feed(name, Decide(target, decision_id(name, now, f"bench:{k}"), now))
    while trader.machines[name].phase is not Phase.IDLE:  # a fill the answer did not carry: poll for it
        await asyncio.sleep(0)
        await trader.poll(trader.clock.now())
        await trader.feed(name, Tick(trader.clock.now()))
    return time.perf_counter() - t0, time.process_time() - c0


def latency(rounds: int, work: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall ms per round, both legs at once vs one after the other (interleaved), and for each round the time
    the venue's own latency takes: its two orders' round trips (2 x the one-way latency it drew for each, the
    same draws recomputed here from its seed) at once (the longer) or one after the other (the sum)."""
    config = bench_config(work / "latency", speed=1.0)
    config_path = work / "latency.yaml"
    raw = {
        "source": "sim",
        "data_dir": str(work / "latency"),
        "exchanges": [{"id": "binance", "symbols": list(PAIR_SYMBOLS)}],
        "sim": {"seed": 7, "speed": 1.0, "start": config.sim.start},
    }
    config_path.write_text(yaml.safe_dump(raw))
    socket = work / "venue.sock"
    serve = ["sim-venue", "--config", str(config_path), "--socket", str(socket)]
    server = subprocess.Popen(
        [sys.executable, "-m", "fundarb_dagster.cli", *serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    out: dict[str, list[float]] = {"together": [], "one after the other": []}
    floors: dict[str, list[float]] = {"together": [], "one after the other": []}
    venue = SimExchange("binance", config.sim)  # the server's venue: the same seed draws the same latencies
    try:
        wait_ready(socket)

        async def session() -> None:
            run = TradeRun(venue="sim", venue_socket=str(socket))
            trader = await open_trader(check(config, run), run, lambda _: None)
            try:
                await one_round(trader, 0)  # warm up the connection and ccxt's structures
                await one_round(trader, 1)
                for k in range(2, 2 + 2 * rounds):
                    trader.legs_together = k % 4 in (2, 3)  # an enter and its exit each way, interleaved
                    way = "together" if trader.legs_together else "one after the other"
                    wall, _ = await one_round(trader, k)
                    out[way].append(wall * 1000)
                    trips = [2.0 * venue._latency(seq) for seq in (2 * k + 1, 2 * k + 2)]  # its k-th pair of orders
                    floors[way].append(max(trips) if trader.legs_together else sum(trips))
                await trader.gateway.exchanges["binance"].connection.request("", SHUTDOWN, (), {})
            finally:
                await trader.gateway.close()

        asyncio.run(session())
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return out, floors


def throughput(rounds: int, work: Path) -> dict[str, Any]:
    """Orders per second through the trader against an in-process venue without latency, and the same orders
    sent straight to the venue."""
    config = bench_config(work / "throughput", speed=1e9)

    async def through_trader() -> tuple[float, float, int]:
        run = TradeRun(venue="sim", stepped=True)
        trader = await open_trader(check(config, run), run, lambda _: None)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            for k in range(rounds):
                # a second of market per round: the venue's book refreshes (liquidity taken at one book update
                # is gone for the next order at that update, so a pinned clock would drain it)
                await trader.clock.sleep_until(trader.clock.now() + 1000)
                await one_round(trader, k)
            return time.perf_counter() - t0, time.process_time() - c0, trader.counters.sent
        finally:
            await trader.gateway.close()

    async def straight() -> float:
        venue = SimExchange("binance", replace(config.sim, now=config.sim.start))
        await venue.load_markets()
        t0 = time.perf_counter()
        for k in range(rounds):
            venue.clock.now_ms = config.sim.start_ms + 1000 * (k + 1)  # the same second per round as the trader
            side = "sell" if k % 2 == 0 else "buy"
            params = {"reduceOnly": True} if k % 2 else {}
            await venue.create_order("BTC/USDT:USDT", "market", side, 0.01, None, params)
            await venue.create_order("BTC/USDT", "market", "buy" if k % 2 == 0 else "sell", 0.01)
        return time.perf_counter() - t0

    wall, cpu, sent = asyncio.run(through_trader())
    direct = asyncio.run(straight())
    return {"orders": sent, "wall_s": wall, "cpu_s": cpu, "direct_wall_s": direct}


def cpu_per_decision(days: float, work: Path) -> tuple[list[float], int]:
    """CPU ms of each `Trader.decide` over a stepped run of the three venues' cash-and-carry pairs."""
    config = bench_config(work / "decisions", speed=3600.0, exchanges=("binance", "bybit", "hyperliquid"))
    spent: list[float] = []

    async def run() -> int:
        trade_run = TradeRun(venue="sim", stepped=True)
        trader = await open_trader(check(config, trade_run), trade_run, lambda _: None)
        decide = trader.decide

        async def timed(decided_ms: int, now: int) -> None:
            c0 = time.process_time()
            await decide(decided_ms, now)
            spent.append((time.process_time() - c0) * 1000)

        trader.decide = timed  # type: ignore[method-assign]
        try:
            await trader.run(until_ms=config.sim.start_ms + int(days * 24 * HOUR_MS))
        finally:
            await trader.gateway.close()
        return len(trader.specs)

    pairs = asyncio.run(run())
    return spent, pairs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(quick: bool) -> str:
    rounds, orders_rounds, days = (30, 300, 1.0) if quick else (200, 2000, 7.0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        walls, floors = latency(rounds, work)
        tp = throughput(orders_rounds, work)
        decisions, pairs = cpu_per_decision(days, work)
    together, serial = walls["together"], walls["one after the other"]
    floor_t, floor_s = floors["together"], floors["one after the other"]

    def p(values: list[float], q: float) -> str:
        return f"{percentile(values, q):6.1f}"

    lines = [
        f"latency: {rounds} decisions each way (enter/exit of binance BTC cash-and-carry, venue process at speed 1)",
        "                                          decision -> both legs filled    the venue's own latency",
        f"  both legs at once:                     p50 {p(together, 0.5)} ms  p99 {p(together, 0.99)} ms"
        f"    p50 {p(floor_t, 0.5)} ms  p99 {p(floor_t, 0.99)} ms",
        f"  one after the other:                   p50 {p(serial, 0.5)} ms  p99 {p(serial, 0.99)} ms"
        f"    p50 {p(floor_s, 0.5)} ms  p99 {p(floor_s, 0.99)} ms",
        f"throughput: {tp['orders']} orders through the trader, in-process venue without latency",
        f"  trader: {tp['orders'] / tp['wall_s']:,.0f} orders/s ({tp['cpu_s'] / tp['orders'] * 1e3:.2f} ms CPU/order); "
        f"the same orders straight to the venue: {tp['orders'] / tp['direct_wall_s']:,.0f} orders/s",
        f"cpu per decision: {len(decisions)} decisions over {days:g} days, {pairs} pairs on 3 venues: "
        f"median {statistics.median(decisions):.1f} ms, p99 {percentile(decisions, 0.99):.1f} ms",
    ]
    overhead = statistics.median(a - b for a, b in zip(together, floor_t, strict=True))
    lines.append(f"the trader's own share of a decision (legs at once, median over rounds): {overhead:.1f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the benchmark runs")
    args = parser.parse_args()
    print(load(), flush=True)
    print(report(args.quick))
    print(load())


if __name__ == "__main__":
    main()
