"""`answered`: a call's answer and whether it waited, with `await`'s own behaviour (results, errors, cancels)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fundarb_dagster.core.sources.answers import answered


async def _at_once() -> str:
    return "held"


async def _waits(turns: int, log: list[str]) -> str:
    try:
        for _ in range(turns):
            await asyncio.sleep(0)
        await asyncio.get_running_loop().create_future()  # a future nobody sets: only a cancel ends it
        return "never"
    except asyncio.CancelledError:
        log.append("cancelled where it waits")
        raise
    finally:
        log.append("finally")


async def _after(turns: int, value: Any) -> Any:
    for _ in range(turns):
        await asyncio.sleep(0)
    if isinstance(value, BaseException):
        raise value
    return value


def test_an_answer_at_once_and_an_answer_after_waiting_are_told_apart() -> None:
    async def main() -> list[Any]:
        return [await answered(_at_once()), await answered(_after(3, "sent")), await answered(_after(0, 7))]

    assert asyncio.run(main()) == [("held", False), ("sent", True), (7, False)]


@pytest.mark.parametrize("turns", [0, 2])
def test_an_error_comes_out_as_await_gives_it(turns: int) -> None:
    async def main() -> None:
        await answered(_after(turns, KeyError("raised")))

    with pytest.raises(KeyError, match="raised"):
        asyncio.run(main())


def test_a_cancel_reaches_the_call_where_it_waits_and_then_the_caller() -> None:
    log: list[str] = []

    async def main() -> None:
        task = asyncio.ensure_future(answered(_waits(2, log)))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())
    assert log == ["cancelled where it waits", "finally"]


def test_the_other_tasks_run_while_the_call_waits() -> None:
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        asyncio.ensure_future(other())
        order.append((await answered(_after(1, "answer")))[0])

    asyncio.run(main())
    assert order == ["other", "answer"]
