"""The two-leg state machine of one pair: pure transitions, no venue, no clock, no I/O.

`step(state, event, rules) -> (state, actions)`. Events are what the trader learns (a decision, an order's
new status and cumulative fill, the time, the venue's positions); actions are what it must do (place an
order, cancel one, say something). The trader loop only feeds events and executes actions, so every path
below is tested by feeding events (tests/core/execution/test_machine.py).

    IDLE --Decide(target != position)--> WORKING (both legs' orders placed, deadline = now + leg timeout)
    WORKING --every order final, legs hedged--> IDLE           ("entered", "exited", or hedged short of target)
    WORKING --every order final, one leg ahead--> repair       (a leg rejected, or only partly filled)
    WORKING --deadline passed, orders open--> CANCELING        (cancel what is open, then repair)
    CANCELING --every order final--> repair / IDLE
    repair: the imbalance (leg A + leg B, base units) is fixed by one order, then WORKING again:
        - closing the lagging leg of an exit (reduce-only) whenever that is the fix,
        - else on the first round completing the lagging leg towards the target ("finishing the pair"),
        - else unwinding the leading leg back to the lagging one (reduce-only);
        every round past `max_repairs` also raises an alarm and waits out the leg timeout before it sends
        (a venue that keeps refusing is not hammered), and the unwind keeps going: an unhedged leg is never
        left alone.
    IDLE --Tick, legs not hedged (delta drift found by reconciliation)--> repair (trim, reduce-only)
    IDLE, or WORKING/CANCELING with no order in flight --Correct(venue positions differ)--> the venue's taken
        (a leg the venue liquidated: a repair loop re-sending a reduce-only order the venue refuses for a
        position it no longer holds ends there; hedged -> idle, else the repair goes on from the venue's legs)

A decision that arrives while the pair is working waits (`pending`) and applies once the pair is idle; one
that flips a leg's sign goes through flat first. Positions are signed base units; a pair is hedged when
`|pos_a + pos_b| <= rules.tolerance` (leg A is the short leg when the signal is positive, so hedged legs
have opposite signs and equal sizes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from .ids import MAX_ATTEMPTS, OrderKey, Purpose, client_order_id, decision_id, pair_tag, parse

HISTORY = 256  # client ids a pair remembers: far more than one decision's orders
FINAL = frozenset({"closed", "canceled", "expired", "rejected"})
STATUSES = frozenset({"intent", "open"}) | FINAL
Pair2 = tuple[float, float]


class Phase(StrEnum):
    IDLE = "idle"
    WORKING = "working"
    CANCELING = "canceling"


@dataclass(frozen=True)
class Rules:
    leg_timeout_ms: int = 5_000
    tolerance: float = 0.0  # base units; set to half the pair's common lot
    max_repairs: int = 3
    complete_first: bool = True  # the first repair round finishes the pair when the target still wants it


@dataclass(frozen=True)
class LegOrder:
    client_id: str
    leg: int  # 0: A, 1: B
    side: int  # +1 buy, -1 sell
    amount: float  # base units
    reduce_only: bool
    purpose: Purpose
    decision: str
    attempt: int
    sent_ms: int
    filled: float = 0.0  # cumulative, base units
    status: str = "intent"  # journaled, not yet acknowledged by the venue

    @property
    def final(self) -> bool:
        return self.status in FINAL


# -- events -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decide:
    target: Pair2  # signed base units per leg
    decision: str  # ids.decision_id(...)
    at_ms: int
    purpose: Purpose | None = None  # FLATTEN for the kill switch; None: ENTRY or EXIT by the move


@dataclass(frozen=True)
class OrderUpdate:
    client_id: str
    status: str
    filled: float  # cumulative, base units
    at_ms: int


@dataclass(frozen=True)
class Tick:
    at_ms: int


@dataclass(frozen=True)
class Correct:
    """The venue's positions of the pair's legs, from reconciliation (applied while no order is in flight)."""

    pos: Pair2
    at_ms: int


Event = Decide | OrderUpdate | Tick | Correct


# -- actions ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    order: LegOrder


@dataclass(frozen=True)
class Cancel:
    client_id: str
    leg: int


@dataclass(frozen=True)
class Note:
    kind: str  # entered, exited, hedged, completed, unwound, timeout, repair, drift, alarm, corrected
    message: str


Action = Place | Cancel | Note


@dataclass(frozen=True)
class PairState:
    pair: str
    exchanges: tuple[str, str]  # leg A's and leg B's venue (client id format)
    held: Pair2 = (0.0, 0.0)  # position before the orders of the current work
    target: Pair2 = (0.0, 0.0)
    decision: str = ""
    phase: Phase = Phase.IDLE
    deadline_ms: int = 0
    orders: tuple[LegOrder, ...] = ()
    repairs: int = 0
    pending: Decide | None = None
    history: tuple[str, ...] = field(default=(), compare=False)  # client ids used lately (attempt numbers)

    @property
    def pos(self) -> Pair2:
        a, b = self.held
        for o in self.orders:
            if o.leg == 0:
                a += o.side * o.filled
            else:
                b += o.side * o.filled
        return (a, b)

    @property
    def imbalance(self) -> float:
        a, b = self.pos
        return a + b

    @property
    def in_flight(self) -> tuple[LegOrder, ...]:
        return tuple(o for o in self.orders if not o.final)


def step(state: PairState, event: Event, rules: Rules) -> tuple[PairState, list[Action]]:
    """One transition (see the module doc)."""
    if isinstance(event, Decide):
        if state.phase is not Phase.IDLE:
            return replace(state, pending=event), []
        return _decide(state, event, rules)
    if isinstance(event, OrderUpdate):
        return _update(state, event, rules)
    if isinstance(event, Tick):
        return _tick(state, event.at_ms, rules)
    if isinstance(event, Correct):
        return _correct(state, event, rules)
    raise TypeError(f"event: {event!r} is not a machine event")


# -- transitions --------------------------------------------------------------------------------------------
def _correct(state: PairState, ev: Correct, rules: Rules) -> tuple[PairState, list[Action]]:
    """The venue's positions win whenever no order is in flight (an order in flight may still move them)."""
    if state.in_flight or _close(state.pos, ev.pos, rules.tolerance):
        return state, []
    moved = f"venue positions {_fmt(ev.pos)} differ from the trader's {_fmt(state.pos)}"
    note = Note("corrected", f"{state.pair}: {moved}; taking the venue's")
    if state.phase is Phase.IDLE:
        return replace(state, held=ev.pos), [note]
    # working on orders that are all final: they are in the venue's positions already, which replace them
    new, actions = _settle(replace(state, held=ev.pos, orders=()), ev.at_ms, rules)
    return new, [note, *actions]


def _decide(state: PairState, ev: Decide, rules: Rules) -> tuple[PairState, list[Action]]:
    pos = state.pos
    target = ev.target
    pending = None
    if any(p * t < 0 and abs(p) > rules.tolerance for p, t in zip(pos, target, strict=True)):
        target, pending = (0.0, 0.0), ev  # a flip goes through flat: reduce-only exits first
    state = replace(state, target=target, decision=ev.decision, pending=pending, repairs=0)
    orders = []
    for leg in (0, 1):
        delta = target[leg] - pos[leg]
        if abs(delta) <= rules.tolerance:
            continue
        purpose = ev.purpose or (Purpose.ENTRY if abs(target[leg]) > abs(pos[leg]) else Purpose.EXIT)
        orders.append(_order(state, leg, delta, _reduces(pos[leg], delta, rules.tolerance), purpose, ev.at_ms))
    if not orders:
        return _after_idle(state, ev.at_ms, rules, [])
    return _work(state, orders, ev.at_ms, rules), [Place(o) for o in orders]


def _update(state: PairState, ev: OrderUpdate, rules: Rules) -> tuple[PairState, list[Action]]:
    if ev.status not in STATUSES:
        raise ValueError(f"status: {ev.status!r}; expected one of {sorted(STATUSES)}")
    orders = list(state.orders)
    for k, o in enumerate(orders):
        if o.client_id != ev.client_id:
            continue
        status = o.status if o.final else ev.status  # a final status never goes back
        orders[k] = replace(o, status=status, filled=max(o.filled, min(ev.filled, o.amount)))
        break
    else:
        return state, []
    state = replace(state, orders=tuple(orders))
    if state.phase is Phase.IDLE or state.in_flight:
        return state, []
    return _settle(state, ev.at_ms, rules)


def _tick(state: PairState, now: int, rules: Rules) -> tuple[PairState, list[Action]]:
    if state.phase is Phase.IDLE:
        if abs(state.imbalance) > rules.tolerance:
            note = Note("drift", f"{state.pair}: legs {_fmt(state.pos)} are not hedged; trimming the larger one")
            new, actions = _repair(replace(state, repairs=rules.max_repairs), now, rules, Purpose.REBALANCE)
            return new, [note, *actions]
        return state, []
    if now < state.deadline_ms:
        return state, []
    if not state.in_flight:  # every order final but not settled yet (cannot happen after _update): settle now
        return _settle(state, now, rules)
    open_legs = sorted({"AB"[o.leg] for o in state.in_flight})
    actions: list[Action] = [Cancel(o.client_id, o.leg) for o in state.in_flight]
    if state.phase is Phase.WORKING:
        seconds = rules.leg_timeout_ms / 1000
        actions.insert(0, Note("timeout", f"{state.pair}: leg {'+'.join(open_legs)} not done after {seconds:g}s"))
    else:
        actions.insert(0, Note("alarm", f"{state.pair}: cancel of leg {'+'.join(open_legs)} not confirmed; again"))
    return replace(state, phase=Phase.CANCELING, deadline_ms=now + rules.leg_timeout_ms), actions


def _settle(state: PairState, now: int, rules: Rules) -> tuple[PairState, list[Action]]:
    """Every order is final: hedged -> idle, else one repair order."""
    if abs(state.imbalance) > rules.tolerance:
        return _repair(state, now, rules, None)
    notes = [Note(*_outcome(state, rules))]
    idle = replace(state, held=state.pos, orders=(), phase=Phase.IDLE, deadline_ms=0, repairs=0)
    return _after_idle(idle, now, rules, notes)


def _after_idle(state: PairState, now: int, rules: Rules, notes: list[Action]) -> tuple[PairState, list[Action]]:
    if state.pending is not None:
        pending = replace(state.pending, at_ms=now)
        new, actions = _decide(replace(state, pending=None), pending, rules)
        return new, [*notes, *actions]
    return state, notes


def _outcome(state: PairState, rules: Rules) -> tuple[str, str]:
    pos, last = state.pos, state.orders[-1].purpose if state.orders else None
    if state.repairs and last in (Purpose.UNWIND, Purpose.REBALANCE):
        return "unwound", f"{state.pair}: unwound the leading leg, legs now {_fmt(pos)}"
    if state.repairs and last is Purpose.COMPLETE:
        return "completed", f"{state.pair}: finished the pair, legs now {_fmt(pos)}"
    if _close(pos, state.target, rules.tolerance):
        kind = "exited" if all(abs(p) <= rules.tolerance for p in pos) else "entered"
        return kind, f"{state.pair}: {kind}, legs {_fmt(pos)}"
    return "hedged", f"{state.pair}: hedged at {_fmt(pos)}, short of target {_fmt(state.target)}"


def _repair(state: PairState, now: int, rules: Rules, purpose: Purpose | None) -> tuple[PairState, list[Action]]:
    """One order that removes the imbalance (see the module doc for which leg)."""
    repairs = state.repairs + 1
    if repairs > rules.max_repairs and purpose is not Purpose.REBALANCE and now < state.deadline_ms:
        return state, []  # past max_repairs a round waits out the leg timeout: no burst of refused orders
    pos, target, imb = state.pos, state.target, state.imbalance
    fixes = []
    for leg in (0, 1):
        new = pos[leg] - imb
        reduces = _reduces(pos[leg], -imb, rules.tolerance)
        toward = abs(target[leg] - new) < abs(target[leg] - pos[leg]) - rules.tolerance
        fixes.append((leg, reduces, toward))
    closing = [leg for leg, reduces, toward in fixes if reduces and toward]
    completing = [leg for leg, _, toward in fixes if toward]
    reducing = [leg for leg, reduces, _ in fixes if reduces]
    if closing:
        leg, kind, reduce_only = closing[0], Purpose.COMPLETE, True
    elif repairs == 1 and rules.complete_first and completing and purpose is None:
        leg, kind, reduce_only = completing[0], Purpose.COMPLETE, False
    elif reducing:
        leg, kind, reduce_only = reducing[0], purpose or Purpose.UNWIND, True
    else:  # both legs on one side (a stale view): shrink the larger one
        leg = 0 if abs(pos[0]) >= abs(pos[1]) else 1
        kind, reduce_only = purpose or Purpose.UNWIND, True
    order = _order(state, leg, -imb, reduce_only, kind, now)
    if order.attempt >= MAX_ATTEMPTS - 1:  # the ids of this decision are used up: say so every leg timeout
        stuck = f"{state.pair}: legs {_fmt(pos)} unhedged by {imb:+.8g} after {order.attempt} orders; act by hand"
        return replace(state, repairs=repairs, phase=Phase.WORKING, deadline_ms=now + rules.leg_timeout_ms), [
            Note("alarm", stuck)
        ]
    flat_target = all(abs(t) <= rules.tolerance for t in target)
    verb = (
        "unwinding" if kind is not Purpose.COMPLETE else "finishing the exit" if flat_target else "finishing the pair"
    )
    actions: list[Action] = [
        Note("repair", f"{state.pair}: legs {_fmt(pos)} unhedged by {imb:+.8g}; {verb} on leg {'AB'[leg]}")
    ]
    if repairs > rules.max_repairs and purpose is not Purpose.REBALANCE:
        actions.append(Note("alarm", f"{state.pair}: still unhedged after {repairs - 1} repair rounds"))
    new = _work(replace(state, repairs=repairs), [order], now, rules)
    return new, [*actions, Place(order)]


def _work(state: PairState, orders: list[LegOrder], now: int, rules: Rules) -> PairState:
    used = state.history + tuple(o.client_id for o in orders)
    return replace(
        state,
        orders=state.orders + tuple(orders),
        phase=Phase.WORKING,
        deadline_ms=now + rules.leg_timeout_ms,
        history=used[-HISTORY:],
    )


def _order(state: PairState, leg: int, delta: float, reduce_only: bool, purpose: Purpose, now: int) -> LegOrder:
    """The next order of (decision, leg, purpose): its attempt number counts every id already used for it, so
    an id is never sent twice for two different orders (a retry of the same order reuses its id instead)."""
    used = [parse(cid) for cid in state.history]
    attempt = sum(1 for k in used if k and k.decision == state.decision and k.leg == leg and k.purpose is purpose)
    key = OrderKey(pair_tag(state.pair), state.decision, leg, purpose, attempt)
    cid = client_order_id(key, state.exchanges[leg])
    return LegOrder(cid, leg, 1 if delta > 0 else -1, abs(delta), reduce_only, purpose, state.decision, attempt, now)


def _reduces(pos: float, delta: float, tolerance: float) -> bool:
    """The move only shrinks the position towards zero (a reduce-only order may carry it)."""
    return abs(pos) > tolerance and pos * delta < 0 and abs(delta) <= abs(pos) + tolerance


def _close(a: Pair2, b: Pair2, tolerance: float) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def _fmt(pos: Pair2) -> str:
    return f"A {pos[0]:+.8g} / B {pos[1]:+.8g}"


def restore(
    pair: str,
    exchanges: tuple[str, str],
    pos: Pair2,
    target: Pair2,
    in_flight: list[LegOrder],
    used: tuple[str, ...],
    rules: Rules,
) -> PairState:
    """A pair's state after a restart, from the venue's truth: `pos` from every fill of the pair's orders,
    `in_flight` the orders not final (their fills so far included in `pos`), `target` the last one journaled,
    `used` every client id the journal holds for the pair (attempt numbers continue after them). With orders in
    flight the pair is WORKING with the deadline of its last order: a timeout that passed while the trader was
    down fires on the first tick (cancel, then finish or unwind)."""
    held = list(pos)
    for o in in_flight:
        held[o.leg] -= o.side * o.filled
    history = tuple(used)[-HISTORY:]
    if not in_flight:
        state = PairState(pair, exchanges, held=(held[0], held[1]), target=target, history=history)
        if abs(state.imbalance) <= rules.tolerance:
            return state
        # One leg ahead with nothing in flight (killed between the legs): the first tick repairs it like a
        # timed-out pair, finishing it when the target still wants the lagging leg, else unwinding.
        last = parse(used[-1]) if used else None
        decision = last.decision if last else decision_id(pair, 0, "restore")
        return replace(state, phase=Phase.WORKING, deadline_ms=0, decision=decision)
    decision = in_flight[-1].decision
    return PairState(
        pair,
        exchanges,
        held=(held[0], held[1]),
        target=target,
        decision=decision,
        phase=Phase.WORKING,
        deadline_ms=max(o.sent_ms for o in in_flight) + rules.leg_timeout_ms,
        orders=tuple(in_flight),
        history=history,
    )
