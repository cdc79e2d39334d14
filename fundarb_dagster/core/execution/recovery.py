"""Start-up: the trader's state rebuilt from what it landed and what the venue holds, before it acts.

1. Read back this trader's landed streams: every order's rows (the intent first), fills, funding, positions.
2. Ask the venue about every order whose last landed state is not final, by venue id or by client id: an
   intent the venue never saw was not placed (final, `not placed`), unless it was sent less than
   `UNKNOWN_GRACE_MS` ago (the request may still be on its way: it stays in flight and is looked up again);
   the others take the venue's status and fill. The venue's word wins over the journal.
3. Fetch the venue's trades of every market the trader used since its last landed fill: what it confirmed
   while the trader was down lands now, once (fills already landed are skipped by trade id).
4. Each pair's position is the sum of its fills (attributed by client id), its target the last one landed,
   its orders in flight those still open; `machine.restore` makes the state, so a leg left alone by the crash
   is finished or unwound on the first tick, and the trader says which.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .ids import Purpose, parse
from .ledger import STATUS_NAMES, decoded, landed_keys, read_landed
from .machine import FINAL, LegOrder, Phase, restore
from .targets import market_key
from .trader import UNKNOWN_GRACE_MS, Tracked, Trader


async def recover(trader: Trader) -> list[str]:
    """Rebuild `trader` (see the module doc); returns what it found, one line per pair that was not idle."""
    data_dir, writer = trader.data_dir, trader.ledger.writer
    orders = read_landed(data_dir, "orders", writer)
    fills = read_landed(data_dir, "fills", writer)
    funding = read_landed(data_dir, "funding_payments", writer)
    positions = read_landed(data_dir, "positions", writer)
    trader.fill_keys = landed_keys(fills, ("exchange", "symbol", "trade_id"))
    trader.funding_keys = {(e, s, int(t)) for e, s, t in landed_keys(funding, ("exchange", "symbol", "ts_ms"))}
    for e, s, t in trader.funding_keys:
        trader.funding_cursor[(e, s)] = max(trader.funding_cursor.get((e, s), 0), t)
    for rec in fills:
        key = (rec["exchange"].decode(), rec["symbol"].decode())
        trader.trade_cursor[key] = max(trader.trade_cursor.get(key, 0), int(rec["ts_ms"]))
        trader.pnl.add_fill(rec)
    trader.pnl.add_funding(float(np.nansum(funding["amount"])) if len(funding) else 0.0)
    now = trader.clock.now()
    used = _rebuild_orders(trader, orders)
    await _ask_the_venue(trader, now)
    started = min((t.sent_ms for t in trader.tracked.values()), default=now)
    for key in {t.key for t in trader.tracked.values()}:
        await trader.collect_fills(key, trader.trade_cursor.get(key, started))
    trader.ledger.flush()
    held = _positions_from_fills(read_landed(data_dir, "fills", writer))
    targets = _last_targets(positions)
    lines = []
    for spec in trader.specs:
        name = spec.name
        in_flight = [t.order for t in trader.tracked.values() if t.pair == name and t.order.status not in FINAL]
        pos = held.get(name, (0.0, 0.0))
        state = restore(
            name,
            (spec.a.exchange, spec.b.exchange),
            pos,
            targets.get(name, pos),
            in_flight,
            tuple(used.get(name, ())),
            trader.rules_for(spec),
        )
        trader.machines[name] = state
        if state.phase is not Phase.IDLE or in_flight:
            legs = f"A {pos[0]:+.8g} / B {pos[1]:+.8g}"
            lines.append(f"{name}: legs {legs}, {len(in_flight)} order(s) in flight after the restart")
    if trader.tracked:
        await trader.reconcile(now)
    return lines


def _rebuild_orders(trader: Trader, orders: np.ndarray) -> dict[str, list[str]]:
    """Every landed order as a `Tracked` in its last landed state; returns the client ids used per pair."""
    used: dict[str, list[str]] = defaultdict(list)
    if not len(orders):
        return used
    cids = decoded(orders, "client_order_id")
    pairs = decoded(orders, "pair")
    order_ids = decoded(orders, "order_id")
    exchanges, symbols = decoded(orders, "exchange"), decoded(orders, "symbol")
    first: dict[str, int] = {}
    for i, cid in enumerate(cids):
        first.setdefault(cid, i)
        if cid not in used[pairs[i]]:
            used[pairs[i]].append(cid)
    last: dict[str, int] = {cid: i for i, cid in enumerate(cids)}
    for cid, i in last.items():
        rec = orders[i]
        key = parse(cid)
        if key is None or pairs[i] not in trader.by_name:
            continue
        order_id = next((order_ids[j] for j in range(first[cid], i + 1) if cids[j] == cid and order_ids[j]), "")
        order = LegOrder(
            cid,
            int(rec["leg"]),
            int(rec["side"]),
            float(rec["amount"]),
            bool(rec["reduce_only"]),
            Purpose(int(rec["purpose"])),
            rec["decision"].decode("ascii"),
            int(rec["attempt"]),
            int(orders[first[cid]]["ts_ms"]),
            float(rec["filled"]),
            STATUS_NAMES[int(rec["status"])],
        )
        tracked = Tracked(
            pairs[i],
            (exchanges[i], symbols[i]),
            order,
            order_id=order_id,
            ref_mid=float(rec["ref_mid"]),
            sent_ms=order.sent_ms,
            fee_usd=float(rec["fee_usd"]) if math.isfinite(float(rec["fee_usd"])) else 0.0,
            landed_status=order.status,
        )
        trader.tracked[cid] = tracked
        if order_id:
            trader.order_clients[(exchanges[i], order_id)] = cid
    return used


async def _ask_the_venue(trader: Trader, now: int) -> None:
    """Step 2 of the module doc: the venue's state of every order not final in the journal."""
    for cid, tracked in list(trader.tracked.items()):
        if tracked.order.status in FINAL:
            continue
        state = await trader.gateway.lookup(tracked.key, cid, tracked.order_id)
        if state is None and tracked.order.status == "intent" and now - tracked.sent_ms < UNKNOWN_GRACE_MS:
            tracked.unknown_since = now  # sent just before the crash: it may still reach the venue; polled
            continue
        if state is None:
            status, filled = (
                ("rejected", 0.0) if tracked.order.status == "intent" else ("canceled", tracked.order.filled)
            )
            reason = "not placed" if status == "rejected" else "unknown to the venue"
            tracked.order = LegOrder(**{**tracked.order.__dict__, "status": status})
            trader.ledger.add("orders", trader._order_row(tracked, status, now, reason))
            trader.counters.not_placed += status == "rejected"
            continue
        if state.order_id:
            tracked.order_id = state.order_id
            trader.order_clients[(tracked.key[0], state.order_id)] = cid
        tracked.fee_usd = state.fee_usd
        tracked.average = state.average
        tracked.order = LegOrder(
            **{**tracked.order.__dict__, "status": state.status, "filled": max(tracked.order.filled, state.filled)}
        )
        trader.ledger.add("orders", trader._order_row(tracked, state.status, now))


def _positions_from_fills(fills: np.ndarray) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    pairs = decoded(fills, "pair")
    for rec, pair in zip(fills, pairs, strict=True):
        if pair and int(rec["leg"]) in (0, 1):
            out[pair][int(rec["leg"])] += float(rec["side"]) * float(rec["amount"])
    return {k: (v[0], v[1]) for k, v in out.items()}


def _last_targets(positions: np.ndarray) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for rec, pair in zip(positions, decoded(positions, "pair"), strict=True):
        out[pair][int(rec["leg"])] = float(rec["target_units"])
    return {k: (v[0], v[1]) for k, v in out.items()}


__all__ = ["market_key", "recover"]
