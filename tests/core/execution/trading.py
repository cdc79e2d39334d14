"""Helpers for the trader's proof runs: a stepped trader on in-process simulated venues, and what the venues
themselves booked (their orders, trades and funding), read from the venue objects, never from the trader.

The funding model here is computed independently of both the venue and the warehouse: the settled rate from the
interval's premium-index samples through the venues' documented formula, the reference price from the world's
paths (mark = index x (1 + premium); the oracle is the index), the position from the venue's trades before the
settlement."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.config import FaultConfig, FundarbConfig, default_config
from fundarb_dagster.core.execution.ids import pair_tag, parse
from fundarb_dagster.core.execution.launch import TradeRun, check, open_trader
from fundarb_dagster.core.execution.ledger import decoded
from fundarb_dagster.core.execution.recovery import recover
from fundarb_dagster.core.execution.trader import Trader
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.sim import VENUES, SimExchange
from fundarb_dagster.core.units import HOUR_MS
from tests.core.sources.sim.common import reference_by_hand, settled_rate_by_hand

# every order fault of the simulator at once, 8 % of orders each (the proof runs' fault plan)
FAULTS = FaultConfig(
    order_reject_rate=0.08, order_timeout_rate=0.08, order_never_fill_rate=0.08, order_disconnect_rate=0.08
)


def trade_config(
    data_dir: Path,
    strategy: str,
    exchanges: Sequence[str],
    faults: FaultConfig | None = None,
    **trade: Any,
) -> FundarbConfig:
    """The embedded sim defaults on some venues, the trader on `strategy`, progress lines off."""
    cfg = default_config()
    sim = cfg.sim if faults is None else replace(cfg.sim, faults=faults)
    venues = tuple(e for e in cfg.exchanges if e.id in exchanges)
    settings = {"strategy": strategy, "progress_interval_s": 1e9, **trade}
    return replace(cfg, data_dir=str(data_dir), sim=sim, exchanges=venues, trade=replace(cfg.trade, **settings))


async def run_stepped(config: FundarbConfig, hours: float, say: Callable[[str], None]) -> Trader:
    """`fundarb trade --venue sim` with the trader moving the simulated clock: recover, then run `hours`."""
    run = TradeRun(venue="sim", stepped=True)
    config = check(config, run)
    trader = await open_trader(config, run, say)
    for line in await recover(trader):
        say(f"recovered {line}")
    await trader.run(until_ms=config.sim.start_ms + int(hours * HOUR_MS))
    return trader


def stepped(config: FundarbConfig, hours: float) -> tuple[Trader, list[str]]:
    said: list[str] = []
    return asyncio.run(run_stepped(config, hours, said.append)), said


@dataclass(frozen=True)
class VenueTrade:
    exchange: str
    symbol: str
    trade_id: str
    client_id: str
    ts_ms: int
    units: float  # signed base units


def venue_orders(venues: dict[str, SimExchange]) -> list[tuple[str, Any]]:
    """Every order each venue accepted: (exchange, its order object)."""
    return [(e, o) for e, ex in venues.items() for o in ex.private.matching.orders.values()]


def venue_trades(venues: dict[str, SimExchange]) -> list[VenueTrade]:
    out = []
    for exchange, ex in venues.items():
        for t in ex.private.matching.trades:
            size = float(ex.markets[t["symbol"]].get("contractSize") or 1.0)
            sign = 1.0 if t["side"] == "buy" else -1.0
            cid = str((t.get("info") or {}).get("clientOrderId") or "")
            out.append(
                VenueTrade(exchange, t["symbol"], str(t["id"]), cid, int(t["timestamp"]), sign * t["amount"] * size)
            )
    return sorted(out, key=lambda t: (t.ts_ms, t.exchange, t.trade_id))


def unhedged_stretches(trader: Trader, trades: Sequence[VenueTrade]) -> dict[str, list[tuple[int, int | None]]]:
    """Per pair, the (start, end) of every stretch its legs were not hedged, from the venue's trades (end None:
    still unhedged). A leg is the trades whose client id names the pair and the leg."""
    by_tag = {pair_tag(s.name): s for s in trader.specs}
    legs: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    out: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    opened: dict[str, int] = {}
    for t in trades:
        key = parse(t.client_id)
        if key is None or key.pair_tag not in by_tag:
            continue
        spec = by_tag[key.pair_tag]
        legs[spec.name][key.leg] += t.units
        tolerance = trader.rules_for(spec).tolerance
        unhedged = abs(sum(legs[spec.name])) > tolerance
        if unhedged and spec.name not in opened:
            opened[spec.name] = t.ts_ms
        elif not unhedged and spec.name in opened:
            out[spec.name].append((opened.pop(spec.name), t.ts_ms))
    for name, start in opened.items():
        out[name].append((start, None))
    return dict(out)


def landed_payments(payments: np.ndarray) -> dict[tuple[str, str, int], float]:
    """`funding_payments` records -> (exchange, symbol, settlement) -> amount."""
    keys = zip(decoded(payments, "exchange"), decoded(payments, "symbol"), payments["ts_ms"].tolist(), strict=True)
    return {(e, s, int(t)): float(a) for (e, s, t), a in zip(keys, payments["amount"].tolist(), strict=True)}


def expected_funding(
    venues: dict[str, SimExchange], trades: Sequence[VenueTrade], start_ms: int, end_ms: int
) -> dict[tuple[str, str, int], float]:
    """(exchange, symbol, settlement) -> the payment the model expects for every settlement in (start, end] at
    which the account held a perp: -units x rate x reference price."""
    out = {}
    for exchange, ex in venues.items():
        spec = VENUES[exchange]
        oracle = spec.facts.funding_price == "oracle"
        for symbol in {t.symbol for t in trades if t.exchange == exchange and ":" in t.symbol}:
            mine = [t for t in trades if t.exchange == exchange and t.symbol == symbol]
            m = ex._m[symbol]
            settlement = ex.funding.next_settlement(m.venue.index, m.a, start_ms)
            while settlement <= end_ms:
                units = sum(t.units for t in mine if t.ts_ms < settlement)  # venues settle before they fill
                interval_h = ex.funding.interval_for(m.venue.index, m.a, settlement)
                if abs(units) > 1e-12:
                    rate = settled_rate_by_hand(ex, symbol, settlement, interval_h)
                    price = reference_by_hand(ex, symbol, settlement, oracle)
                    out[(exchange, symbol, settlement)] = -units * rate * price
                settlement = ex.funding.next_settlement(m.venue.index, m.a, settlement)
    return out


class CaptureClock:
    """One market clock for the simulated venues of an in-process capture that moves only when every consumer
    waits for a later event: then to the earliest time one waits for, at least `step_ms` on (so latest-state
    streams give one update per step, as a live capture gets about one a second, and trades come in full).

    What the capture sees is then a function of the seed, not of how busy the machine is: paced by wall time at
    a high speed, a consumer that falls behind a few ms skips market minutes (at x30000 a loaded machine left
    hyperliquid's settlements priced by snapshots up to 90 market minutes old)."""

    def __init__(self, start_ms: int, consumers: int, step_ms: int) -> None:
        self.now_ms, self.consumers, self.step_ms = start_ms, consumers, step_ms
        self.waiting: list[tuple[int, asyncio.Future]] = []

    def milliseconds(self) -> int:
        return self.now_ms

    async def wait_until(self, target_ms: int) -> None:
        if target_ms <= self.now_ms:
            await asyncio.sleep(0)
            return
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((target_ms, done))
        self._advance()
        await done

    def leave(self) -> None:
        """A consumer is done: the others no longer wait for it."""
        self.consumers -= 1
        self._advance()

    def _advance(self) -> None:
        if not self.waiting or len(self.waiting) < self.consumers:
            return
        self.now_ms = max(min(t for t, _ in self.waiting), self.now_ms + self.step_ms)
        due = [w for w in self.waiting if w[0] <= self.now_ms]
        self.waiting = [w for w in self.waiting if w[0] > self.now_ms]
        for _, done in due:
            done.set_result(None)


async def capture_in_process(
    config: FundarbConfig, data_dir: Path, hours: float, streams: Sequence[str], step_ms: int | None = None
) -> None:
    """The capture's path without MPI: every configured symbol's `streams` through the Feed from the simulator
    (at its configured speed, or on one `CaptureClock` of `step_ms` steps) until its clock passes `hours`,
    landed as the capture lands them."""
    path = registry_path(data_dir)
    registry = InstrumentRegistry.load(path)  # ids stay as already landed
    # one exchange object per stream: hyperliquid's funding rides its ticker channel, and two consumers of one
    # simulated subscription would share (split) its updates
    venues = {(e.id, s): SimExchange(e.id, config.sim, symbols=e.symbols) for e in config.exchanges for s in streams}
    for e in config.exchanges:
        for stream in streams:
            registry.add_markets(e.id, await venues[(e.id, stream)].load_markets(), list(e.symbols))
    registry.save(path)
    end = config.sim.start_ms + int(hours * HOUR_MS)
    got: dict[str, list[np.ndarray]] = defaultdict(list)

    watched = {
        key: [s for s in next(e.symbols for e in config.exchanges if e.id == key[0]) if key[1] != "funding" or ":" in s]
        for key in venues
    }
    clock = None
    if step_ms is not None:
        clock = CaptureClock(config.sim.start_ms, sum(map(len, watched.values())), step_ms)
        for venue in venues.values():
            venue.clock = venue.subscriptions.clock = clock

    async def consume(feed: Feed, stream: str, symbol: str) -> None:
        try:
            async for batch in feed.watch(stream, symbol):
                if len(batch.records):
                    got[stream].append(batch.records)
                if feed.now_ms() >= end:
                    return
        finally:
            if clock is not None:
                clock.leave()

    jobs = []
    for (exchange, stream), venue in venues.items():
        feed = Feed(venue, registry, stale_timeout_s={s: 1e9 for s in streams})
        jobs.extend(consume(feed, stream, s) for s in watched[(exchange, stream)])
    await asyncio.gather(*jobs)
    for venue in venues.values():
        await venue.close()
    names = registry.names()
    for seq, (stream, parts) in enumerate(sorted(got.items())):
        records = np.concatenate(parts)
        landing.write_stream(data_dir, stream, schema.to_arrow(stream, records, names), "capture-test", seq)
