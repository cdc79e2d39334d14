"""`fundarb trade`: the long-lived process that turns signals into hedged pairs on the venues.

The loop is thin: it reads the clock, feeds events to each pair's state machine (`machine.step`) and carries
out the actions it returns; the decisions, the risk check and the bookkeeping live in their own modules.

    start:  recover (recovery.py): what this trader landed, what the venue holds -> each pair's state
    loop:   at each decision time (aligned to `decision_interval_s` on the venue's clock):
                mids and funding -> signals -> targets (targets.py) -> phase-1 risk (risk_gate.admit)
                -> Decide(target) per pair whose target moved
            every turn: the venues' private streams (streams.py: watch_orders, watch_my_trades where the venue
                has them) -> OrderUpdate, fills -> the `fills` stream; where a venue has none, or its stream
                is down, while orders are in flight every `poll_interval_s`: fetch_order, fetch_my_trades
            Tick(now) -> leg timeouts, repairs, drift
            every action: Place (phase-2 risk, write-ahead intent, create_order), Cancel
            every `reconcile_interval_s`: venue positions and balances against the pairs (Correct), funding
            the kill switch: `<data_dir>/.fundarb/trade/<name>.flatten` (flatten, then reduce-only) and
                `<name>.reduce_only`
            a progress line every `progress_interval_s` (wall): positions, P&L split, orders in flight, last decision

Everything it learns lands through the `Ledger` (ledger.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ccxt
import numpy as np

from ..config import TradeConfig
from ..risk import RiskLimits
from ..units import HOUR_MS
from ..venues import fees_bps, maintenance_margin_rate
from . import ledger as rows
from .clocks import TraderClock
from .gateway import Gateway, OrderState, Refused, Sent, error_reason
from .ids import Purpose, decision_id, pair_tag, parse
from .ledger import Ledger
from .machine import (
    Action,
    Cancel,
    Correct,
    Decide,
    LegOrder,
    Note,
    OrderUpdate,
    PairState,
    Phase,
    Place,
    Rules,
    Tick,
    step,
)
from .pnl import PnL
from .risk_gate import BookLeg, admit, order_check
from .signals import own_signals, warehouse_signals
from .streams import PrivateStreams
from .targets import PairSpec, Target, choose_targets, market_key

Key = tuple[str, str]
# An order the venue does not know is "not placed" only once its request can no longer arrive: venues refuse a
# request older than its receive window (binance's recvWindow, 10 s as ccxt sends it); sooner, it may still be
# queued (a lookup right after a crash or a timeout can beat the order to the venue).
UNKNOWN_GRACE_MS = 10_000
CLOCK_SKEW_MS = 60_000  # trades are asked for from this much before the trader's own clock says they could be
# a fill the order's status counts but no trade has brought this long after is fetched (a stream can drop it)
FILL_GRACE_MS = 2_000
LEDGER_FLUSH_S = 2.0  # wall seconds between landings of the buffered streams (the capture's flush interval)
PHASE_CODES = {Phase.IDLE: 0, Phase.WORKING: 1, Phase.CANCELING: 2}


def control_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / ".fundarb" / "trade"


def flatten_file(data_dir: str | Path, name: str) -> Path:
    """Its presence makes the running trader flatten every pair and stay reduce-only (the kill switch)."""
    return control_dir(data_dir) / f"{name}.flatten"


def reduce_only_file(data_dir: str | Path, name: str) -> Path:
    return control_dir(data_dir) / f"{name}.reduce_only"


@dataclass
class Tracked:
    """What the trader knows of one order beyond the machine: where, the venue's id, the mid it saw."""

    pair: str
    key: Key
    order: LegOrder
    order_id: str = ""
    ref_mid: float = math.nan
    sent_ms: int = 0
    fee_usd: float = 0.0
    average: float = math.nan
    landed_status: str = ""
    unknown_since: int | None = None  # the send's answer was lost: look it up by client id
    seen_ms: int = 0  # when the venue last told of it (its answer, a stream update, a lookup)
    booked: float = 0.0  # base units of its fills landed


@dataclass
class Counters:
    notes: Counter = field(default_factory=Counter)
    sent: int = 0
    refused: int = 0
    vetoed: int = 0
    unknown: int = 0
    lookups_found: int = 0
    not_placed: int = 0
    fills: int = 0
    fills_streamed: int = 0  # of `fills`, those the private streams delivered (the rest were fetched)
    decisions: int = 0


class Trader:
    legs_together = True  # send a decision's orders at once (False: one after the other, the benchmark's baseline)

    def __init__(
        self,
        config: TradeConfig,
        specs: Sequence[PairSpec],
        gateway: Gateway,
        ledger: Ledger,
        clock: TraderClock,
        data_dir: str | Path,
        *,
        options: Mapping[str, object] | None = None,
        warehouse: str | Path | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.specs = list(specs)
        self.by_name = {s.name: s for s in self.specs}
        self.by_tag = {pair_tag(s.name): s.name for s in self.specs}
        self.gateway = gateway
        self.ledger = ledger
        self.clock = clock
        self.data_dir = Path(data_dir)
        self.options = dict(options or {})
        self.warehouse = warehouse
        self.say = say
        self.rules = Rules(leg_timeout_ms=int(config.leg_timeout_s * 1000), max_repairs=config.max_repairs)
        self.limits = RiskLimits(**dict(config.limits))
        self.machines: dict[str, PairState] = {
            s.name: PairState(s.name, (s.a.exchange, s.b.exchange)) for s in self.specs
        }
        self.tracked: dict[str, Tracked] = {}
        self.mids: dict[Key, float] = {}
        self.marks: dict[Key, float] = {}
        self.venue_positions: dict[Key, dict[str, Any]] = {}
        self.last_snapshot: tuple[int, np.ndarray] | None = None  # the positions snapshot last taken, and when
        self.fill_keys: set[tuple[str, str, str]] = set()
        self.funding_keys: set[tuple[str, str, int]] = set()
        self.trade_cursor: dict[Key, int] = {}
        self.funding_cursor: dict[Key, int] = {}
        # (exchange, venue order id) -> client id: order ids are each venue's own ("1" on two venues is two orders)
        self.order_clients: dict[tuple[str, str], str] = {}
        self.unbooked: set[str] = set()  # client ids whose filled amount their landed fills do not reach yet
        self.counters = Counters()
        self.streams = PrivateStreams(gateway.exchanges, say)
        self.pnl = PnL()
        self.equity = config.capital_usd
        self.peak_equity = config.capital_usd
        self.last_decision = "none yet"
        self.flattening = False
        self.next_decision = 0
        self.next_reconcile = 0
        self.next_progress = 0.0
        self.next_flush = 0.0
        self.flushed_hour = -1

    # -- public ------------------------------------------------------------------------------------------
    @property
    def legs(self) -> dict[Key, Any]:
        return self.gateway.legs

    def rules_for(self, spec: PairSpec) -> Rules:
        """The pair's rules: imbalances under half its common lot are hedged (lot rounding, not exposure)."""
        from .sizing import common_lot

        return Rules(self.rules.leg_timeout_ms, common_lot(spec.a, spec.b) / 2, self.rules.max_repairs)

    def in_flight(self) -> int:
        return sum(len(m.in_flight) for m in self.machines.values())

    def unhedged(self) -> dict[str, float]:
        """Pairs whose legs are not hedged right now: pair -> the imbalance (base units)."""
        out = {}
        for name, m in self.machines.items():
            tolerance = self.rules_for(self.by_name[name]).tolerance
            if abs(m.imbalance) > tolerance:
                out[name] = m.imbalance
        return out

    async def run(self, until_ms: int | None = None, stop: Callable[[], bool] | None = None) -> None:
        """The loop (see the module doc) until `until_ms` on the venue's clock or `stop()`."""
        now = self.clock.now()
        interval = int(self.config.decision_interval_s * 1000)
        self.next_decision = (now // interval) * interval + interval if self.next_decision <= 0 else self.next_decision
        self.next_reconcile = now + int(self.config.reconcile_interval_s * 1000)
        self.streams = PrivateStreams(self.gateway.exchanges, self.say, self.clock)  # each run subscribes anew
        self.streams.start()
        try:
            while True:
                now = self.clock.now()
                if (until_ms is not None and now >= until_ms) or (stop is not None and stop()):
                    break
                await self.once(now)
                await self.clock.sleep_until(self.wake_time(now, until_ms))
            await self.take_streams(self.clock.now())
            await self.book_missing(self.clock.now(), grace_ms=0)
        finally:
            await self.streams.close()
        try:  # a clean stop lands what the venue booked up to now (funding, positions, balances)
            await self.reconcile(self.clock.now())
        except ccxt.BaseError as exc:
            self.say(f"trade: the last reconciliation failed ({error_reason(exc)}); the next start does it")
        self.ledger.flush()

    def wake_time(self, now: int, until_ms: int | None) -> int:
        poll = now + int(self.config.poll_interval_s * 1000)
        busy = self.in_flight() or self.unbooked or self.unhedged()
        if busy or any(m.phase is not Phase.IDLE for m in self.machines.values()):
            return poll
        nxt = min(self.next_decision, self.next_reconcile, poll if self._switch_pending() else self.next_decision)
        return min(nxt, until_ms) if until_ms is not None else nxt

    async def once(self, now: int) -> None:
        """One turn of the loop at `now`."""
        self._obey_switches(now)
        if now >= self.next_decision:
            interval = int(self.config.decision_interval_s * 1000)
            decided_ms = (now // interval) * interval
            self.next_decision = decided_ms + interval
            await self.decide(decided_ms, now)
        await self.take_streams(now)
        if self.in_flight():
            await self.poll(now)
        for name in list(self.machines):
            await self.feed(name, Tick(now))
        if now >= self.next_reconcile:
            self.next_reconcile = now + int(self.config.reconcile_interval_s * 1000)
            await self.reconcile(now)
        self.flush(now)
        self.progress(now)

    def flush(self, now: int) -> None:
        """Land what is buffered every `LEDGER_FLUSH_S` of wall time and whenever the venue's hour turns (one
        file per stream and flush, so a stepped run of days is not thousands of files). The orders stream's
        intents are landed before each send (`place`); what else a SIGKILL drops from the buffer the venue
        still holds, and recovery fetches it again."""
        wall = time.monotonic()
        if wall >= self.next_flush or now // HOUR_MS != self.flushed_hour:
            self.ledger.flush()
            self.next_flush = wall + LEDGER_FLUSH_S
            self.flushed_hour = now // HOUR_MS

    # -- decisions ---------------------------------------------------------------------------------------
    async def observe(self) -> dict[Key, float]:
        """Mids of every leg, and the perps' funding APR now."""
        aprs: dict[Key, float] = {}
        for key, leg in self.legs.items():
            self.mids[key] = await self.gateway.mid(key)
            if leg.kind == "perp":
                aprs[key] = await self.gateway.funding_apr(key)
        return aprs

    async def decide(self, decided_ms: int, now: int) -> None:
        aprs = await self.observe()
        if self.config.signal == "warehouse" and self.warehouse is not None:
            signals = warehouse_signals(self.warehouse, self.config.strategy, self.specs)
        else:
            signals = own_signals(
                self.config.strategy, self.specs, list(self.legs.values()), self.mids, aprs, self.options, decided_ms
            )
        held = {name: m.target if m.phase is not Phase.IDLE else m.pos for name, m in self.machines.items()}
        targets = choose_targets(
            self.specs,
            signals,
            held,
            self.mids,
            enter_apr=self.config.enter_apr,
            exit_apr=self.config.exit_apr,
            capital_usd=self.config.capital_usd,
            leverage=self.config.leverage,
            max_pairs=self.config.max_pairs,
            reduce_only=self.reduce_only,
        )
        if self.flattening:
            targets = [Target(t.pair, 0, (0.0, 0.0), t.signal) for t in targets]
        admission = admit(
            self.book(),
            [(t.pair, t.units) for t in targets],
            self.templates(),
            self.equity,
            self.drawdown,
            self.limits,
            self.config.leverage,
        )
        self.counters.decisions += 1
        moved = []
        for t in targets:
            machine = self.machines[t.pair]
            if t.pair in admission.vetoed:
                rules_hit = ",".join(sorted({b.rule for b in admission.vetoed[t.pair]}))
                self.counters.notes["risk_veto"] += 1
                self.say(f"trade: {t.pair}: entry vetoed by {rules_hit}")
                continue
            target = admission.admitted.get(t.pair, t.units)
            if _same(target, machine.target) and (machine.phase is not Phase.IDLE or _same(target, machine.pos)):
                continue
            kind = f"target:{t.direction:+d}:{abs(target[1]):.10g}"
            purpose = Purpose.FLATTEN if self.flattening else None
            await self.feed(t.pair, Decide(target, decision_id(t.pair, decided_ms, kind), now, purpose))
            moved.append(f"{t.pair} -> {t.direction:+d} ({t.signal:+.2%})")
        best = max(targets, key=lambda t: abs(t.signal) if math.isfinite(t.signal) else -1.0, default=None)
        self.last_decision = "; ".join(moved) or (
            f"hold (best {best.pair} {best.signal:+.2%})" if best is not None and math.isfinite(best.signal) else "hold"
        )
        self.snapshot_positions(now)

    # -- the state machines and their actions ---------------------------------------------------------------
    async def feed(self, name: str, event: Any) -> None:
        spec = self.by_name[name]
        state, actions = step(self.machines[name], event, self.rules_for(spec))
        self.machines[name] = state
        for action in actions:
            if not isinstance(action, Place):
                await self.act(name, action)
        places = [a.order for a in actions if isinstance(a, Place)]
        if places:  # a decision's legs go out together: one venue round trip, not two (bench_trader.py)
            await self.place(name, places)

    async def act(self, name: str, action: Action) -> None:
        spec = self.by_name[name]
        if isinstance(action, Note):
            self.counters.notes[action.kind] += 1
            if action.kind not in ("entered", "exited"):
                self.say(f"trade: {action.message}")
            return
        if isinstance(action, Cancel):
            tracked = self.tracked.get(action.client_id)
            key = tracked.key if tracked else market_key(spec.a if action.leg == 0 else spec.b)
            await self.gateway.cancel(key, action.client_id, tracked.order_id if tracked else "")
            return
        if isinstance(action, Place):
            await self.place(name, [action.order])

    async def place(self, name: str, orders: Sequence[LegOrder]) -> None:
        """Send a decision's orders: each passes the phase-two risk check, every intent is journaled with one
        landing (the write-ahead: on disk before the venue can know an order), then they go out together
        (`legs_together`; else one after the other, each with its own landing)."""
        if not self.legs_together and len(orders) > 1:
            for order in orders:
                await self.place(name, [order])
            return
        spec = self.by_name[name]
        now = self.clock.now()
        memo: dict[Any, list[Any]] = {}  # orders that leave the same book share one evaluation
        sending = []
        for order in orders:
            key = market_key(spec.a if order.leg == 0 else spec.b)
            if key not in self.mids or order.purpose not in (Purpose.ENTRY, Purpose.EXIT, Purpose.FLATTEN):
                self.mids[key] = await self.gateway.mid(key)
            tracked = Tracked(name, key, order, ref_mid=self.mids.get(key, math.nan), sent_ms=now)
            self.tracked[order.client_id] = tracked
            veto = self.phase_two(name, order, memo)
            if veto:
                self.counters.vetoed += 1
                await self._final(tracked, "rejected", 0.0, now, reason=f"risk:{veto}")
                continue
            self.ledger.add("orders", self._order_row(tracked, "intent", now))
            sending.append(tracked)
        if sending:
            self.ledger.flush("orders")
            await asyncio.gather(*(self._send(t, now) for t in sending))

    async def _send(self, tracked: Tracked, now: int) -> None:
        order = tracked.order
        result = await self.gateway.send(tracked.key, order)
        self.counters.sent += 1
        if isinstance(result, Sent):
            await self.apply(tracked, result.state, now)
        elif isinstance(result, Refused):
            self.counters.refused += 1
            await self._final(tracked, "rejected", 0.0, now, reason=result.reason)
        else:
            self.counters.unknown += 1
            tracked.unknown_since = now
            self.say(f"trade: {tracked.pair}: no answer to {order.client_id} ({result.reason}); looking it up")

    def phase_two(self, name: str, order: LegOrder, memo: dict[Any, list[Any]] | None = None) -> str:
        """The limit an order would breach now (empty: send it); reductions pass (risk_gate.order_check)."""
        if order.reduce_only:
            return ""
        leg_name = "ab"[order.leg]
        in_flight: dict[tuple[str, str], float] = {}
        for pair, machine in self.machines.items():
            pos = list(machine.pos)
            for o in machine.in_flight:
                if o.client_id != order.client_id:
                    pos[o.leg] += o.side * (o.amount - o.filled)
            in_flight[(pair, "a")], in_flight[(pair, "b")] = pos
        found = order_check(
            self.book(),
            in_flight,
            ((name, leg_name), order.side * order.amount),
            self.templates(),
            self.equity,
            self.drawdown,
            self.limits,
            self.config.leverage,
            memo,
        )
        return ",".join(sorted({b.rule for b in found}))

    async def apply(self, tracked: Tracked, state: OrderState, now: int) -> None:
        """The venue's view of an order -> its row in `orders`, its fills, and the machine."""
        if tracked.unknown_since is not None:  # found again (by a lookup, or its stream's update)
            self.counters.lookups_found += 1
        tracked.unknown_since = None
        tracked.seen_ms = now
        if state.order_id:
            tracked.order_id = state.order_id
            self.order_clients[(tracked.key[0], state.order_id)] = tracked.order.client_id
        if math.isfinite(state.average):
            tracked.average = state.average
        tracked.fee_usd = state.fee_usd if math.isfinite(state.fee_usd) else tracked.fee_usd
        status = state.status if state.status in ("open", "closed", "canceled", "expired", "rejected") else "open"
        if (status != "open" or state.filled > tracked.order.filled) and not self.streams.streaming(tracked.key[0]):
            await self.collect_fills(tracked.key, tracked.sent_ms)  # a streaming venue sends its trades itself
        await self._final(tracked, status, state.filled, max(now, state.ts_ms or now))

    async def _final(self, tracked: Tracked, status: str, filled: float, now: int, reason: str = "") -> None:
        order = tracked.order
        moved = filled > order.filled + 1e-15 or status != (tracked.landed_status or order.status)
        tracked.order = LegOrder(**{**order.__dict__, "filled": max(order.filled, filled), "status": status})
        if tracked.order.filled > tracked.booked + 1e-12:
            self.unbooked.add(order.client_id)
        if moved:
            tracked.landed_status = status
            self.ledger.add("orders", self._order_row(tracked, status, now, reason))
        await self.feed(tracked.pair, OrderUpdate(order.client_id, status, filled, now))

    def _order_row(self, tracked: Tracked, status: str, now: int, reason: str = "") -> np.ndarray:
        leg = self.legs[tracked.key]
        return rows.order_record(
            tracked.order,
            pair=tracked.pair,
            leg=leg,
            ts_ms=now,
            recv_ts_ms=now,
            order_id=tracked.order_id,
            average=tracked.average,
            fee_usd=tracked.fee_usd,
            ref_mid=tracked.ref_mid,
            reason=reason,
            status=status,
        )

    async def poll(self, now: int) -> None:
        """Every order in flight, asked of the venue (by its id, or by client id when the send's answer was lost).
        On a streaming venue only an order the streams cannot settle is asked: one whose send went unanswered
        (past the grace, to tell "not placed"), or one the venue has said nothing of for two leg timeouts."""
        for machine in list(self.machines.values()):
            for order in machine.in_flight:
                tracked = self.tracked.get(order.client_id)
                if tracked is None:
                    continue
                if self.streams.streaming(tracked.key[0]) and not self._streams_cannot_settle(tracked, now):
                    continue
                try:
                    state = await self.gateway.lookup(tracked.key, order.client_id, tracked.order_id)
                except Exception as exc:  # noqa: BLE001 - a venue hiccup: ask again next turn
                    self.counters.notes["poll_error"] += 1
                    self.say(f"trade: lookup of {order.client_id} failed ({type(exc).__name__}); again next turn")
                    continue
                if state is not None:
                    await self.apply(tracked, state, now)
                elif tracked.unknown_since is not None or not tracked.order_id:
                    if now - tracked.sent_ms < UNKNOWN_GRACE_MS:
                        continue  # it may still be on its way (a venue places a request it has queued)
                    # the venue has no order with this client id, and the request can no longer arrive
                    self.counters.not_placed += 1
                    await self._final(tracked, "rejected", 0.0, now, reason="not placed")

    def _streams_cannot_settle(self, tracked: Tracked, now: int) -> bool:
        if not tracked.order_id or tracked.unknown_since is not None:
            return now - tracked.sent_ms >= UNKNOWN_GRACE_MS
        return now - max(tracked.seen_ms, tracked.sent_ms) >= 2 * self.rules.leg_timeout_ms

    # -- the private streams -----------------------------------------------------------------------------
    async def take_streams(self, now: int) -> None:
        """What the venues' private streams delivered: trades landed as fills, order updates applied. A venue
        whose streams came (back) up is caught up by REST first (its orders in flight, its trades)."""
        await self.streams.settle()
        for venue in self.streams.exchanges:
            if self.streams.needs_catch_up(venue):
                await self.catch_up(venue, now)
            updates, trades = self.streams.take(venue)
            for update in updates:  # venue ids -> client ids first: a trade names its order by venue id
                cid, oid = str(update.get("clientOrderId") or ""), str(update.get("id") or "")
                if cid in self.tracked and oid:
                    self.order_clients[(venue, oid)] = cid
            for trade in trades:
                key = (venue, str(trade.get("symbol")))
                if key in self.legs and await self.land_trade(key, trade):
                    self.counters.fills += 1
                    self.counters.fills_streamed += 1
            for update in updates:
                await self._stream_update(venue, update, now)
        await self.book_missing(now)

    async def book_missing(self, now: int, grace_ms: int = FILL_GRACE_MS) -> None:
        """Fetch the trades of orders whose filled amount their landed fills still fall short of, `grace_ms` after
        the venue last told of them: a stream dropped while the order filled loses nothing (polling lands fills
        with the order's status, so this finds nothing there)."""
        for cid in sorted(self.unbooked):
            tracked = self.tracked[cid]
            if now - max(tracked.seen_ms, tracked.sent_ms) < grace_ms:
                continue
            self.counters.notes["fills_fetched_late"] += await self.collect_fills(tracked.key, tracked.sent_ms)
            if tracked.booked + 1e-12 < tracked.order.filled:
                self.say(f"trade: {cid}: filled {tracked.order.filled:g}, the venue's trades show {tracked.booked:g}")
            self.unbooked.discard(cid)

    async def _stream_update(self, venue: str, update: Mapping[str, Any], now: int) -> None:
        key = (venue, str(update.get("symbol")))
        cid = str(update.get("clientOrderId") or "") or self.order_clients.get((venue, str(update.get("id"))), "")
        tracked = self.tracked.get(cid)
        if key not in self.legs or tracked is None or tracked.order.final:
            return  # not an order of this run's pairs, or one already settled
        state = self.gateway.state(key, update)
        if state.status == "open" and state.filled <= tracked.order.filled and tracked.order_id:
            tracked.seen_ms = now
            return  # nothing the trader does not know (an update older than the send's answer)
        await self.apply(tracked, replace(state, client_id=cid), now)

    async def catch_up(self, venue: str, now: int) -> None:
        """REST for what a (re)subscribed stream may have missed: the venue's orders in flight and its trades."""
        in_flight = [t for t in self.tracked.values() if t.key[0] == venue and not t.order.final]
        for tracked in in_flight:
            state = await self.gateway.lookup(tracked.key, tracked.order.client_id, tracked.order_id)
            if state is not None:
                await self.apply(tracked, state, now)
        for key in [k for k in self.legs if k[0] == venue]:
            since = min([t.sent_ms for t in in_flight if t.key == key] + [now])
            await self.collect_fills(key, since)
        self.counters.notes["stream_catch_up"] += 1
        self.streams.caught_up(venue)

    # -- fills, funding, positions ------------------------------------------------------------------------
    async def collect_fills(self, key: Key, since: int) -> int:
        """The venue's trades of `key` since the cursor (or `since`), each landed once, attributed by client id."""
        # a venue stamps trades on its own clock: ask from a little earlier (a trade already landed is skipped)
        start = min(self.trade_cursor.get(key, since), since) - CLOCK_SKEW_MS
        trades = await self.gateway.my_trades(key, start)
        landed = sum([await self.land_trade(key, trade) for trade in trades])
        self.counters.fills += landed
        return landed

    async def land_trade(self, key: Key, trade: Mapping[str, Any]) -> bool:
        """One venue trade -> the `fills` stream, once (False: landed already)."""
        k = (key[0], key[1], str(trade.get("id")))
        if k in self.fill_keys:
            return False
        order_id = str(trade.get("order") or "")
        named = (trade.get("info") or {}).get("clientOrderId")
        cid = self.order_clients.get((key[0], order_id)) or (str(named) if named else "")
        if not cid and order_id:  # an order known by client id only (its answer was lost): the venue names it
            state = await self.gateway.lookup(key, "", order_id)
            cid = state.client_id if state is not None else ""
            if cid:
                self.order_clients[(key[0], order_id)] = cid
        tracked = self.tracked.get(cid)
        parsed = parse(cid)
        pair = tracked.pair if tracked else (self.by_tag.get(parsed.pair_tag, "") if parsed else "")
        leg_index = parsed.leg if parsed else -1
        ref_mid = tracked.ref_mid if tracked else math.nan
        record = rows.fill_record(
            trade,
            pair=pair,
            leg_index=leg_index,
            leg=self.legs[key],
            client_order_id=cid,
            ref_mid=ref_mid,
            recv_ts_ms=self.clock.now(),
        )
        self.ledger.add("fills", record)
        self.pnl.add_fill(record[0])
        if tracked is not None:
            tracked.booked += abs(float(record["amount"][0]))
            if tracked.booked + 1e-12 >= tracked.order.filled:
                self.unbooked.discard(cid)
        self.fill_keys.add(k)
        self.trade_cursor[key] = max(self.trade_cursor.get(key, 0), int(trade["timestamp"]))
        return True

    async def collect_funding(self, now: int) -> None:
        for key, leg in self.legs.items():
            if leg.kind != "perp":
                continue
            since = self.funding_cursor.get(key)
            items = await self.gateway.funding_history(key, since)
            for item in items:
                k = (key[0], key[1], int(item["timestamp"]))
                if k in self.funding_keys:
                    continue
                record = rows.funding_record(key[0], item, now)
                self.ledger.add("funding_payments", record)
                self.pnl.add_funding(float(record["amount"][0]))
                self.funding_keys.add(k)
                self.funding_cursor[key] = max(self.funding_cursor.get(key, 0), k[2])

    async def reconcile(self, now: int) -> None:
        """The venue's positions and balances against the pairs; funding booked since the last time."""
        exchanges: dict[str, list[str]] = {}
        for (exchange, symbol), leg in self.legs.items():
            if leg.kind == "perp":
                exchanges.setdefault(exchange, []).append(symbol)
        for exchange, symbols in exchanges.items():
            held = await self.gateway.positions(exchange, symbols)
            for symbol in symbols:  # a closed position is not listed: it is flat, not what it was
                self.venue_positions.pop((exchange, symbol), None)
            self.venue_positions.update(held)
        balances: dict[str, dict[str, Any]] = {}
        for exchange in {k[0] for k in self.legs}:
            balances[exchange] = await self.gateway.balance(exchange)
        self.equity = self.account_equity(balances)
        self.peak_equity = max(self.peak_equity, self.equity)
        for exchange, balance in balances.items():
            self.ledger.add("balances", rows.balance_records(exchange, balance, now, now, self.equity))
        for key in self.legs:
            if key in self.venue_positions:
                mark = float(self.venue_positions[key].get("markPrice") or math.nan)
                if math.isfinite(mark):
                    self.marks[key] = mark
        for name in list(self.machines):
            venue = self.venue_units(name, balances)
            if venue is not None:
                await self.feed(name, Correct(venue, now))
        await self.collect_funding(now)
        self.snapshot_positions(now)

    def venue_units(self, name: str, balances: Mapping[str, Mapping[str, Any]]) -> tuple[float, float] | None:
        """The venue's units of the pair's legs when the pair alone holds them (else None: no correction)."""
        spec = self.by_name[name]
        out = []
        for leg in (spec.a, spec.b):
            key = market_key(leg)
            sharing = [
                n
                for n, m in self.machines.items()
                if n != name and key in self.by_name[n].markets and any(abs(u) > 0 for u in m.pos)
            ]
            if sharing:
                return None
            if leg.kind == "perp":
                out.append(self.gateway.position_units(key, self.venue_positions.get(key)))
            else:
                return None  # spot balances also hold what the trader did not buy: never corrected from them
        return (out[0], out[1])

    def account_equity(self, balances: Mapping[str, Mapping[str, Any]]) -> float:
        """Quote cash + spot holdings at mid + perps' unrealised PnL, over the venues."""
        total = 0.0
        for exchange, balance in balances.items():
            for code, amount in (balance.get("total") or {}).items():
                if not amount:
                    continue
                if code in ("USDT", "USDC", "USD"):
                    total += float(amount)
                    continue
                mids = [
                    self.mids.get(k, math.nan)
                    for k, leg in self.legs.items()
                    if k[0] == exchange and leg.kind == "spot" and leg.base == code
                ]
                if mids and math.isfinite(mids[0]):
                    total += float(amount) * mids[0]
        for position in self.venue_positions.values():
            upnl = position.get("unrealizedPnl")
            total += float(upnl) if upnl is not None else 0.0
        return total

    @property
    def drawdown(self) -> float:
        return 1.0 - self.equity / self.peak_equity if self.peak_equity > 0 else 0.0

    # -- the book, for risk -------------------------------------------------------------------------------
    def _book_leg(self, name: str, which: int, units: float) -> BookLeg:
        spec = self.by_name[name]
        leg = spec.a if which == 0 else spec.b
        key = market_key(leg)
        mark = self.marks.get(key, self.mids.get(key, math.nan))
        position = self.venue_positions.get(key) or {}
        entry = float(position.get("entryPrice") or mark) if leg.kind == "perp" else mark
        # the venue's isolated wallet (ccxt `collateral`, without the unrealised PnL, which the liquidation price
        # adds from the entry) and its tier's rate; the backtest's margin model where the venue has no position
        wallet = (
            float(position.get("collateral") or abs(units) * mark / self.config.leverage) if leg.kind == "perp" else 0.0
        )
        mmr = float(position.get("maintenanceMarginPercentage") or maintenance_margin_rate(leg.exchange))
        return BookLeg(
            name,
            "ab"[which],
            leg.exchange,
            leg.symbol,
            leg.base,
            leg.kind,
            units,
            entry,
            mark,
            wallet,
            mmr if leg.kind == "perp" else 0.0,
            fees_bps(leg.exchange).taker(leg.kind) / 1e4,
        )

    def book(self) -> list[BookLeg]:
        out = []
        for name, machine in self.machines.items():
            for which, units in enumerate(machine.pos):
                if units:
                    out.append(self._book_leg(name, which, units))
        return out

    def templates(self) -> dict[tuple[str, str], BookLeg]:
        return {(s.name, "ab"[w]): self._book_leg(s.name, w, 0.0) for s in self.specs for w in (0, 1)}

    # -- switches, snapshots, progress -------------------------------------------------------------------
    @property
    def reduce_only(self) -> bool:
        return self.config.reduce_only or self.flattening or reduce_only_file(self.data_dir, self.config.name).exists()

    def _switch_pending(self) -> bool:
        return not self.flattening and flatten_file(self.data_dir, self.config.name).exists()

    def _obey_switches(self, now: int) -> None:
        if self._switch_pending():
            self.flattening = True
            self.say(f"trade: kill switch {flatten_file(self.data_dir, self.config.name)}: flattening every pair")
            self.next_decision = now  # decide (flat) at once

    def flatten(self) -> None:
        """Flatten every pair at the next turn, then stay reduce-only."""
        self.flattening = True
        self.next_decision = self.clock.now()

    def flat(self) -> bool:
        return all(
            all(abs(u) <= self.rules_for(self.by_name[n]).tolerance for u in m.pos) and not m.in_flight
            for n, m in self.machines.items()
        )

    def snapshot_positions(self, now: int) -> None:
        """Every pair leg's position at `now`, one record per leg and instant (the table's key): a later look at
        the same instant (a decision, then the reconciliation of the same turn) replaces the earlier one while it
        is still buffered, and is dropped once that one has landed."""
        snapshot = []
        for name, machine in self.machines.items():
            spec = self.by_name[name]
            for which, leg in enumerate((spec.a, spec.b)):
                key = market_key(leg)
                book = self._book_leg(name, which, machine.pos[which])
                venue = self.venue_positions.get(key)
                values = {
                    "ts_ms": now,
                    "recv_ts_ms": now,
                    "units": machine.pos[which],
                    "target_units": machine.target[which],
                    "venue_units": self.gateway.position_units(key, venue) if leg.kind == "perp" else math.nan,
                    "entry_price": book.entry_price,
                    "mark_price": book.mark_price,
                    "wallet_usd": book.wallet_usd if leg.kind == "perp" else math.nan,
                    "liquidation_price": float((venue or {}).get("liquidationPrice") or math.nan),
                    "mmr": book.mmr,
                    "taker_fee": book.taker_fee,
                    "leverage": self.config.leverage,
                    "leg": which,
                    "is_perp": int(leg.kind == "perp"),
                    "phase": PHASE_CODES[machine.phase],
                    "exchange": leg.exchange,
                    "symbol": leg.symbol,
                    "underlying": leg.base,
                    "pair": name,
                    "decision": machine.decision,
                }
                snapshot.append(rows.position_record(values))
        if not snapshot:
            return
        records, pending = np.concatenate(snapshot), self.ledger.pending["positions"]
        earlier = self.last_snapshot[1] if self.last_snapshot is not None and self.last_snapshot[0] == now else None
        self.last_snapshot = (now, records)
        if earlier is None:
            self.ledger.add("positions", records)
            return
        for i, part in enumerate(pending):
            if part is earlier:
                pending[i] = records
                return
        self.last_snapshot = (now, earlier)  # landed already: the instant keeps the snapshot it has

    def progress(self, now: int, force: bool = False) -> None:
        wall = time.monotonic()
        if not force and wall < self.next_progress:
            return
        self.next_progress = wall + self.config.progress_interval_s
        held = [
            f"{n.split('|')[0]}|..: A {m.pos[0]:+.6g} B {m.pos[1]:+.6g}" for n, m in self.machines.items() if any(m.pos)
        ]
        split = self.pnl.split({**self.mids, **self.marks}, self.positions_by_key())
        self.say(
            f"trade {self.config.name} @ {_iso(now)}: positions [{'; '.join(held) or 'flat'}] "
            f"pnl funding {split['funding']:+,.2f} basis {split['basis']:+,.2f} fees {-split['fees']:+,.2f} "
            f"slippage {-split['slippage']:+,.2f} | in flight {self.in_flight()} | "
            f"orders {self.counters.sent} sent, {self.counters.refused} refused, {self.counters.vetoed} vetoed | "
            f"last decision: {self.last_decision}"
        )

    def positions_by_key(self) -> dict[Key, float]:
        out: dict[Key, float] = {}
        for name, machine in self.machines.items():
            spec = self.by_name[name]
            for which, leg in enumerate((spec.a, spec.b)):
                out[market_key(leg)] = out.get(market_key(leg), 0.0) + machine.pos[which]
        return out


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-12 for x, y in zip(a, b, strict=True))


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))
