"""The pair state machine, driven by events alone: no venue, no clock."""

from __future__ import annotations

import re

import pytest

from fundarb_dagster.core.execution.ids import (
    OrderKey,
    Purpose,
    client_order_id,
    decision_id,
    pair_tag,
    parse,
)
from fundarb_dagster.core.execution.machine import (
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
    restore,
    step,
)

PAIR = "binance:BTC/USDT:USDT|binance:BTC/USDT"
RULES = Rules(leg_timeout_ms=5_000, tolerance=1e-9, max_repairs=3)


def fresh() -> PairState:
    return PairState(PAIR, ("binance", "binance"))


def run(state: PairState, *events: object) -> tuple[PairState, list[object]]:
    actions: list[object] = []
    for ev in events:
        state, acts = step(state, ev, RULES)  # type: ignore[arg-type]
        actions.extend(acts)
    return state, actions


def places(actions: list[object]) -> list[LegOrder]:
    return [a.order for a in actions if isinstance(a, Place)]


def notes(actions: list[object], kind: str) -> list[str]:
    return [a.message for a in actions if isinstance(a, Note) and a.kind == kind]


def enter(q: float = 1.0, at: int = 0) -> Decide:
    return Decide((-q, q), decision_id(PAIR, at, f"target:{q}"), at)


# -- ids --------------------------------------------------------------------------------------------------
def test_client_order_ids_are_a_pure_function_of_the_decision_and_parse_back() -> None:
    d = decision_id(PAIR, 1_700_000_000_000, "target:+1")
    assert d == decision_id(PAIR, 1_700_000_000_000, "target:+1")
    assert d != decision_id(PAIR, 1_700_000_000_000 + 3_600_000, "target:+1")
    key = OrderKey(pair_tag(PAIR), d, 1, Purpose.UNWIND, 7)
    plain, hexed = client_order_id(key, "okx"), client_order_id(key, "hyperliquid")
    assert re.fullmatch(r"[0-9a-z]{30}", plain)  # okx: at most 32 alphanumerics; binance/bybit: 36
    assert re.fullmatch(r"0x[0-9a-f]{32}", hexed)  # hyperliquid's cloid: a 128-bit hex
    assert parse(plain) == key and parse(hexed) == key
    assert parse("web-123") is None and parse(None) is None and parse("0x" + "1" * 32) is None


# -- entries ----------------------------------------------------------------------------------------------
def test_both_legs_filled_is_an_entered_pair_with_equal_and_opposite_legs() -> None:
    state, actions = run(fresh(), enter(0.5))
    a, b = places(actions)
    assert (a.leg, a.side, a.amount, a.reduce_only, a.purpose) == (0, -1, 0.5, False, Purpose.ENTRY)
    assert (b.leg, b.side, b.amount, b.reduce_only) == (1, +1, 0.5, False)
    assert state.phase is Phase.WORKING and state.deadline_ms == 5_000
    state, actions = run(
        state, OrderUpdate(a.client_id, "closed", 0.5, 100), OrderUpdate(b.client_id, "closed", 0.5, 120)
    )
    assert state.phase is Phase.IDLE and state.pos == (-0.5, 0.5) and state.orders == ()
    assert notes(actions, "entered")


def test_a_rejected_leg_is_finished_first_then_unwound_when_it_keeps_failing() -> None:
    state, actions = run(fresh(), enter(1.0))
    a, b = places(actions)
    state, actions = run(
        state, OrderUpdate(a.client_id, "closed", 1.0, 50), OrderUpdate(b.client_id, "rejected", 0, 60)
    )
    (complete,) = places(actions)
    assert (complete.leg, complete.side, complete.amount, complete.purpose) == (1, +1, 1.0, Purpose.COMPLETE)
    assert not complete.reduce_only and "finishing the pair" in notes(actions, "repair")[0]
    # the completion never fills: at its deadline it is cancelled, then leg A is unwound (reduce-only)
    state, actions = run(state, Tick(60 + 4_999))
    assert not [a for a in actions if isinstance(a, Cancel)]
    state, actions = run(state, Tick(60 + 5_000))
    assert [c.client_id for c in actions if isinstance(c, Cancel)] == [complete.client_id]
    assert state.phase is Phase.CANCELING and notes(actions, "timeout")
    state, actions = run(state, OrderUpdate(complete.client_id, "canceled", 0, 5_100))
    (unwind,) = places(actions)
    assert (unwind.leg, unwind.side, unwind.amount, unwind.reduce_only) == (0, +1, 1.0, True)
    assert unwind.purpose is Purpose.UNWIND
    state, actions = run(state, OrderUpdate(unwind.client_id, "closed", 1.0, 5_200))
    assert state.phase is Phase.IDLE and state.pos == (0.0, 0.0) and notes(actions, "unwound")


def test_a_partial_fill_cancelled_at_the_timeout_is_completed_for_the_rest() -> None:
    state, actions = run(fresh(), enter(1.0))
    a, b = places(actions)
    state, _ = run(state, OrderUpdate(a.client_id, "closed", 1.0, 10), OrderUpdate(b.client_id, "open", 0.6, 20))
    state, actions = run(state, Tick(5_000))
    assert [c.client_id for c in actions if isinstance(c, Cancel)] == [b.client_id]
    state, actions = run(state, OrderUpdate(b.client_id, "canceled", 0.6, 5_010))
    (complete,) = places(actions)
    assert complete.leg == 1 and complete.amount == pytest.approx(0.4) and complete.purpose is Purpose.COMPLETE
    state, actions = run(state, OrderUpdate(complete.client_id, "closed", 0.4, 5_020))
    assert state.pos == pytest.approx((-1.0, 1.0)) and notes(actions, "completed")


def test_a_fill_arriving_after_the_cancel_still_counts_and_status_never_goes_back() -> None:
    state, actions = run(fresh(), enter(1.0))
    a, b = places(actions)
    state, _ = run(state, OrderUpdate(a.client_id, "closed", 1.0, 10), Tick(5_000))
    # the venue filled leg B while the cancel travelled: the cancel fails, the order is closed, filled
    state, actions = run(state, OrderUpdate(b.client_id, "closed", 1.0, 5_001))
    assert state.phase is Phase.IDLE and state.pos == (-1.0, 1.0) and notes(actions, "entered")
    state2, _ = run(state, OrderUpdate(b.client_id, "open", 0.2, 5_002))  # stale update of a folded order
    assert state2 == state


# -- exits, flips, pending decisions -----------------------------------------------------------------------
def test_an_exit_is_reduce_only_and_a_failed_exit_leg_is_closed_not_reopened() -> None:
    held = PairState(PAIR, ("binance", "binance"), held=(-1.0, 1.0), target=(-1.0, 1.0))
    state, actions = run(held, Decide((0.0, 0.0), decision_id(PAIR, 3_600_000, "target:0"), 3_600_000))
    a, b = places(actions)
    assert a.reduce_only and b.reduce_only and a.purpose is Purpose.EXIT and (a.side, b.side) == (1, -1)
    state, actions = run(state, OrderUpdate(a.client_id, "closed", 1.0, 3_600_100))
    state, actions = run(state, OrderUpdate(b.client_id, "rejected", 0, 3_600_200))
    (fix,) = places(actions)
    assert (fix.leg, fix.side, fix.reduce_only, fix.purpose) == (
        1,
        -1,
        True,
        Purpose.COMPLETE,
    )  # close B, never reopen A
    state, actions = run(state, OrderUpdate(fix.client_id, "closed", 1.0, 3_600_300))
    assert state.pos == (0.0, 0.0) and state.phase is Phase.IDLE


def test_a_flip_goes_flat_first_and_a_decision_while_working_waits() -> None:
    held = PairState(PAIR, ("binance", "bybit"), held=(-1.0, 1.0), target=(-1.0, 1.0))
    flip = Decide((2.0, -2.0), decision_id(PAIR, 7, "target:-2"), 7)
    state, actions = run(held, flip)
    exits = places(actions)
    assert all(o.reduce_only and o.purpose is Purpose.EXIT for o in exits) and state.target == (0.0, 0.0)
    assert state.pending == flip
    state, actions = run(state, *(OrderUpdate(o.client_id, "closed", 1.0, 10) for o in exits))
    entries = places(actions)
    assert [(o.leg, o.side, o.amount, o.reduce_only) for o in entries] == [(0, 1, 2.0, False), (1, -1, 2.0, False)]
    assert notes(actions, "exited") and state.target == (2.0, -2.0) and state.pending is None


# -- ids never reused, alarms, drift, restart -----------------------------------------------------------------
def test_repeated_repairs_use_new_ids_and_raise_an_alarm_but_never_give_up() -> None:
    state, actions = run(fresh(), enter(1.0))
    a, b = places(actions)
    state, actions = run(state, OrderUpdate(a.client_id, "closed", 1.0, 1), OrderUpdate(b.client_id, "rejected", 0, 2))
    sent = [*places(actions)]
    now = 10
    for k in range(6):  # every repair order is rejected
        state, actions = run(state, OrderUpdate(sent[-1].client_id, "rejected", 0, now))
        if k >= 2:  # past max_repairs a round waits out the leg timeout, then sends (and raises the alarm)
            assert not places(actions) and state.phase is Phase.WORKING
            now = state.deadline_ms
            state, actions = run(state, Tick(now))
            assert notes(actions, "alarm")
        sent.extend(places(actions))
        now += 1
    ids = [a.client_id, b.client_id, *(o.client_id for o in sent)]
    assert len(ids) == len(set(ids))
    assert all(o.purpose is Purpose.UNWIND and o.reduce_only for o in sent[1:])
    assert [parse(o.client_id).attempt for o in sent[1:]] == list(range(6))


def test_venue_positions_that_drift_are_taken_and_the_larger_leg_is_trimmed() -> None:
    held = PairState(PAIR, ("binance", "binance"), held=(-1.0, 1.0), target=(-1.0, 1.0))
    state, actions = run(held, Correct((-0.7, 1.0), 100))  # leg A partly liquidated by the venue
    assert state.held == (-0.7, 1.0) and notes(actions, "corrected")
    state, actions = run(state, Tick(200))
    (trim,) = places(actions)
    assert (trim.leg, trim.side, trim.amount, trim.reduce_only, trim.purpose) == (
        1,
        -1,
        pytest.approx(0.3),
        True,
        Purpose.REBALANCE,
    )
    assert notes(actions, "drift")
    state, _ = run(state, OrderUpdate(trim.client_id, "closed", 0.3, 300))
    assert state.pos == pytest.approx((-0.7, 0.7)) and state.phase is Phase.IDLE


def test_a_restart_with_a_leg_in_flight_past_its_timeout_cancels_then_finishes_or_unwinds() -> None:
    d = decision_id(PAIR, 0, "target:1")
    key_a, key_b = (OrderKey(pair_tag(PAIR), d, leg, Purpose.ENTRY, 0) for leg in (0, 1))
    b = LegOrder(client_order_id(key_b, "binance"), 1, 1, 1.0, False, Purpose.ENTRY, d, 0, 1_000, 0.25, "open")
    used = (client_order_id(key_a, "binance"), b.client_id)
    state = restore(PAIR, ("binance", "binance"), (-1.0, 0.25), (-1.0, 1.0), [b], used, RULES)
    assert state.phase is Phase.WORKING and state.held == (-1.0, 0.0) and state.pos == (-1.0, 0.25)
    state, actions = run(state, Tick(60_000))
    assert [c.client_id for c in actions if isinstance(c, Cancel)] == [b.client_id]
    state, actions = run(state, OrderUpdate(b.client_id, "canceled", 0.25, 60_001))
    (complete,) = places(actions)
    assert complete.amount == pytest.approx(0.75) and complete.client_id not in used


def test_a_restart_one_legged_with_nothing_in_flight_says_it_finishes_the_pair() -> None:
    d = decision_id(PAIR, 0, "target:1")
    used = (client_order_id(OrderKey(pair_tag(PAIR), d, 0, Purpose.ENTRY, 0), "binance"),)
    state = restore(PAIR, ("binance", "binance"), (-1.0, 0.0), (-1.0, 1.0), [], used, RULES)
    state, actions = run(state, Tick(10))
    (complete,) = places(actions)
    assert complete.leg == 1 and complete.side == 1 and "finishing the pair" in notes(actions, "repair")[0]
    # with no target left (an exit was journaled) the leg is closed instead, reduce-only
    state = restore(PAIR, ("binance", "binance"), (-1.0, 0.0), (0.0, 0.0), [], used, RULES)
    state, actions = run(state, Tick(10))
    (close,) = places(actions)
    assert close.leg == 0 and close.reduce_only and "finishing the exit" in notes(actions, "repair")[0]


def test_a_leg_the_venue_liquidated_ends_the_repair_loop_when_reconciliation_shows_it() -> None:
    # An exit: leg A's reduce-only buy closes it; the venue refuses leg B's reduce-only sell (it liquidated that
    # position already), and every repair re-sends it, refused again
    held = PairState(PAIR, ("binance", "binance"), held=(-1.0, 1.0), target=(-1.0, 1.0))
    state, actions = run(held, Decide((0.0, 0.0), decision_id(PAIR, 3_600_000, "target:0"), 3_600_000))
    a, b = places(actions)
    state, actions = run(
        state, OrderUpdate(a.client_id, "closed", 1.0, 3_600_100), OrderUpdate(b.client_id, "rejected", 0, 3_600_200)
    )
    now = 3_600_300
    for _ in range(5):
        (again,) = places(actions) or [None]
        if again is None:  # past max_repairs: the round waits out the leg timeout
            now = state.deadline_ms
            state, actions = run(state, Tick(now))
            (again,) = places(actions)
        assert (again.leg, again.reduce_only) == (1, True)
        state, actions = run(state, OrderUpdate(again.client_id, "rejected", 0, now))
        now += 1
    assert state.phase is Phase.WORKING and state.pos == (0.0, 1.0)
    # an order in flight may still move the venue's positions: no correction then
    state, actions = run(state, Tick(state.deadline_ms))
    (in_flight,) = places(actions)
    same, nothing = run(state, Correct((0.0, 0.0), now))
    assert same == state and nothing == []
    state, actions = run(state, OrderUpdate(in_flight.client_id, "rejected", 0, now + 1))
    # reconciliation: the venue holds neither leg. Taken; flat is the target: the exit is done, no more orders
    state, actions = run(state, Correct((0.0, 0.0), now + 2))
    assert notes(actions, "corrected") and notes(actions, "exited") and not places(actions)
    assert state.phase is Phase.IDLE and state.pos == (0.0, 0.0) and state.orders == ()
    state, actions = run(state, Tick(now + 60_000))
    assert not places(actions)
