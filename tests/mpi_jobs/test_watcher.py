"""The watcher's ring side without MPI: back-pressure waits, drop_newest, and the events that report them."""

from __future__ import annotations

import asyncio

import numpy as np

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import CaptureConfig, default_config
from fundarb_dagster.core.instruments import InstrumentRegistry
from mpi_jobs.capture import assign_subscriptions
from mpi_jobs.control import RING_STREAMS, StopFlag
from mpi_jobs.ring import Ring
from mpi_jobs.watcher import Watcher


def _watcher(drop_policy: str, capacity: int) -> Watcher:
    config = default_config(capture=CaptureConfig(drop_policy=drop_policy, ring_records=capacity, batch_records=8))
    rings = {s: Ring(schema.dtype_of(s), capacity if s != "capture_events" else 64) for s in RING_STREAMS}
    return Watcher(config, InstrumentRegistry(), [], rings, StopFlag(), deadline=None)


def _trades(n: int) -> np.ndarray:
    records = schema.empty("trades", n)
    records["trade_id"] = np.arange(n)
    return records


def test_drop_newest_discards_overflow_and_reports_one_dropped_event_with_the_count() -> None:
    watcher = _watcher("drop_newest", capacity=16)
    asyncio.run(watcher.push("trades", _trades(40)))
    assert watcher.rings["trades"].drops == 24
    watcher.report_ring_pressure()
    asyncio.run(watcher.hand_over("capture_events"))
    events = watcher.rings["capture_events"].pop()
    assert events["kind"].tolist() == [int(schema.EventKind.DROPPED)]
    assert events["count"].tolist() == [24]
    assert events["stream"].tolist() == [int(schema.StreamCode.TRADES)]
    np.testing.assert_array_equal(watcher.rings["trades"].pop()["trade_id"], np.arange(16))


def test_block_policy_waits_for_the_consumer_and_reports_backpressure_losing_nothing() -> None:
    watcher = _watcher("block", capacity=16)
    ring = watcher.rings["trades"]
    received: list[np.ndarray] = []

    async def scenario() -> None:
        async def slow_consumer() -> None:
            while sum(map(len, received)) < 100:
                await asyncio.sleep(0.005)
                received.append(ring.pop())

        consumer = asyncio.ensure_future(slow_consumer())
        await watcher.push("trades", _trades(100))  # six times the ring: must wait, not drop
        await consumer

    asyncio.run(scenario())
    np.testing.assert_array_equal(np.concatenate(received)["trade_id"], np.arange(100))
    assert ring.drops == 0 and ring.waits == 1
    watcher.report_ring_pressure()
    asyncio.run(watcher.hand_over())
    events = watcher.rings["capture_events"].pop()
    assert events["kind"].tolist() == [int(schema.EventKind.BACKPRESSURE)] and events["count"].tolist() == [1]


def test_staged_small_batches_reach_the_ring_in_order_on_hand_over() -> None:
    watcher = _watcher("block", capacity=1024)
    for start in range(0, 30, 3):
        records = _trades(3)
        records["trade_id"] += start
        watcher.stage("trades", records)
    assert len(watcher.rings["trades"]) == 0  # below batch_records nothing is pushed yet
    asyncio.run(watcher.hand_over())
    np.testing.assert_array_equal(watcher.rings["trades"].pop()["trade_id"], np.arange(30))


def test_subscriptions_are_dealt_over_every_watcher() -> None:
    subs = default_config().subscriptions()
    dealt = assign_subscriptions(subs, [1, 2, 5])
    assert sorted(sum(dealt.values(), [])) == sorted(subs)
    sizes = [len(v) for v in dealt.values()]
    assert max(sizes) - min(sizes) <= 1
