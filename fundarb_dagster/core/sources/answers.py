"""Awaiting a source's call: its answer, and whether it waited for it (gave the event loop a turn).

A call answered from what the source already holds returns without a turn of the loop, so a Feed whose stream
always has data would starve every other task; a call that waited for its message has given the loop its turn
already. `answered` tells the two apart at no cost to the call (`Feed._await_watched` yields only after the
first kind).
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Generator
from typing import Any


@types.coroutine
def answered(awaitable: Awaitable[Any]) -> Generator[Any, Any, tuple[Any, bool]]:
    """`await awaitable`, and whether it waited: (its result, True when it gave the loop a turn). After its first
    step this passes every send, throw and close on as `await` does (PEP 380), so a cancel reaches the call
    where it waits, as before."""
    steps = awaitable.__await__()
    try:
        step = steps.send(None)
    except StopIteration as done:
        return done.value, False  # answered at once
    while True:
        try:
            sent = yield step
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - passed on to the call, as `await` does
            try:
                step = steps.throw(exc)
            except StopIteration as done:
                return done.value, True
        else:
            try:
                step = steps.send(sent)
            except StopIteration as done:
                return done.value, True
