"""A watcher rank: its subscriptions' feeds -> staged record batches -> its shared-memory rings.

One asyncio loop, one exchange object per exchange it serves, one `Feed.watch(stream, symbol)` task per
subscription; each feed stages its tickers and trades and processes them a batch at a time (`Feed.drain`
takes what it holds). Staged records go to the rings once `batch_records` are staged or every `STAGE_MAX_AGE_S`. On
a full ring the watcher waits with back-off (the `block` policy, counted as BACKPRESSURE) or discards what
does not fit (`drop_newest`, counted as DROPPED). At a stop, each subscription may finish its call in flight
(`STOP_GRACE_S`), then the rings are marked stopping, handed what is staged and closed; the last hand-over
is bounded in time, and whatever could not be handed over by then is counted as dropped, never silently lost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import FundarbConfig
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources import EndOfData, open_exchange
from fundarb_dagster.core.sources.validation import concat_events, event_rows

from .control import EXIT_OK, EXIT_UNUSED, RING_STREAMS, StopFlag, say
from .ring import Backoff, Ring

STOP_GRACE_S = 3.0  # at a stop, how long subscriptions may take to return the call in flight (busy hosts are slow)
CLOSE_TIMEOUT_S = 2.0  # closing an exchange (its sockets) at a stop
FINAL_HAND_OVER_S = 3.0  # the last hand-over to the rings at a stop; what does not fit by then is counted dropped
STOP_BOUND_S = STOP_GRACE_S + CLOSE_TIMEOUT_S + FINAL_HAND_OVER_S  # a watcher closes its rings within this
STAGE_MAX_AGE_S = 0.05  # a watcher hands small batches to its rings at least this often


def make_exchange(config: FundarbConfig, exchange_id: str, clock_start: float | None = None) -> Any:
    """The exchange object of a watcher. Simulated venues on every rank share one virtual clock, started
    at the job's broadcast start time, so all ranks see the same market moment."""
    if config.source == "sim" and clock_start is not None:
        from fundarb_dagster.core.sources.sim import SimExchange

        symbols = next(e.symbols for e in config.exchanges if e.id == exchange_id)
        return SimExchange(exchange_id, config.sim, symbols=symbols, wall_start=clock_start)
    return open_exchange(config, exchange_id)


class Watcher:
    """One watcher rank: feeds -> staged batches -> its rings. Runs one asyncio loop."""

    def __init__(
        self,
        config: FundarbConfig,
        registry: InstrumentRegistry,
        subscriptions: list[tuple[str, str, str]],
        rings: dict[str, Ring],
        stop: StopFlag,
        deadline: float | None,
        clock_start: float | None = None,
        rank: int = -1,
    ) -> None:
        self.clock_start = clock_start
        self.rank = rank
        self.config = config
        self.registry = registry
        self.subscriptions = subscriptions
        self.rings = rings
        self.stop = stop
        self.deadline = deadline
        self.drop = config.capture.drop_policy == "drop_newest"
        self.batch_records = config.capture.batch_records
        self._stage: dict[str, list[np.ndarray]] = {s: [] for s in RING_STREAMS}
        self._staged: dict[str, int] = dict.fromkeys(RING_STREAMS, 0)
        self._backoff = Backoff(spins=0, max_sleep_s=0.002)
        self._drops_reported: dict[str, int] = dict.fromkeys(RING_STREAMS, 0)
        self._waits_reported: dict[str, int] = dict.fromkeys(RING_STREAMS, 0)
        self.exchanges: dict[str, Any] = {}
        self.feeds: dict[str, Any] = {}
        self.stopping = False
        self.exit_code = EXIT_OK
        self._cpu_start = time.process_time()

    # the ring side ------------------------------------------------------------------------------------
    def stage(self, stream: str, records: np.ndarray) -> None:
        if len(records):
            self._stage[stream].append(records)
            self._staged[stream] += len(records)

    async def hand_over(self, stream: str | None = None, deadline: float | None = None) -> None:
        """Push staged records to the rings (one stream, or all); see `push` for `deadline`."""
        for name in RING_STREAMS if stream is None else (stream,):
            if not self._staged[name]:
                continue
            chunks = self._stage[name]
            records = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            self._stage[name] = []
            self._staged[name] = 0
            await self.push(name, records, deadline)

    async def push(self, stream: str, records: np.ndarray, deadline: float | None = None) -> None:
        """Into the ring; on a full ring wait (yielding to the other tasks) or, under drop_newest, drop.

        With a `deadline` (time.monotonic), what is still not in the ring by then is counted as dropped.
        """
        ring = self.rings[stream]
        done = ring.try_push(records)
        if done == len(records):
            return
        # Events are never dropped by the policy: they are how drops are reported.
        if self.drop and stream != "capture_events":
            ring.count_drops(len(records) - done)
            return
        ring.count_wait()
        self._backoff.reset()
        try:
            while done < len(records):
                if deadline is not None and time.monotonic() >= deadline:
                    ring.count_drops(len(records) - done)
                    return
                await asyncio.sleep(self._backoff.delay_s())
                done += ring.try_push(records[done:])
        except asyncio.CancelledError:
            # Cancelled while waiting for room: what is not in the ring goes back to the front of the stage,
            # where the final hand-over at shutdown finds it.
            self._stage[stream].insert(0, records[done:])
            self._staged[stream] += len(records) - done
            raise

    def now_ms(self) -> int:
        """The source's clock (virtual in the simulator, the recording's in a replay, wall time live)."""
        for exchange in self.exchanges.values():
            return int(exchange.milliseconds())
        return int(time.time() * 1000)

    def report_ring_pressure(self) -> None:
        """DROPPED and BACKPRESSURE events for what the rings counted since the last report."""
        now = self.now_ms()
        rows = []
        for stream in schema.MARKET_STREAMS:
            ring = self.rings[stream]
            for kind, total, seen in (
                (schema.EventKind.DROPPED, ring.drops, self._drops_reported),
                (schema.EventKind.BACKPRESSURE, ring.waits, self._waits_reported),
            ):
                if total > seen[stream]:
                    reason = "ring full: drop_newest" if kind == schema.EventKind.DROPPED else "ring full"
                    rows.append(
                        event_rows(kind, stream, -1, now, now, count=total - seen[stream], start_ms=now, end_ms=now,
                                   reason=reason)
                    )  # fmt: skip
                    seen[stream] = total
        if rows:
            self.stage("capture_events", concat_events(rows))

    # the feed side ------------------------------------------------------------------------------------
    def _feed(self, exchange_id: str) -> Any:
        if exchange_id not in self.feeds:
            from fundarb_dagster.core.sources.feed import Feed

            exchange = make_exchange(self.config, exchange_id, self.clock_start)
            self.exchanges[exchange_id] = exchange
            capture = self.config.capture
            self.feeds[exchange_id] = Feed(
                exchange,
                self.registry,
                funding_poll_interval_s=self.config.live.funding_poll_interval_s,
                ohlcv_timeframe=capture.ohlcv_timeframe,
                stale_timeout_s=dict(capture.stale_timeout_s),
                max_backoff_s=self.config.live.reconnect_max_backoff_s,
                book_levels=capture.book_levels,
                book_interval_s=capture.book_interval_s,
                open_interest_interval_s=capture.open_interest_interval_s,
                book_rest_interval_s=self.config.book_rest_interval_s(exchange_id),
                # Gaps in trades/ohlcv are filled from REST history by the Feed itself (GAP_FILLED events).
                backfill_gaps=True,
                # tickers and trades processed a batch at a time; `take_staged` bounds how long they wait
                stage_records=capture.batch_records,
                stage_max_age_s=STAGE_MAX_AGE_S,
            )
        return self.feeds[exchange_id]

    async def pump(self, exchange_id: str, symbol: str, stream: str) -> None:
        """One subscription: batches from the feed into the stage; restarts after an unexpected error."""
        feed = self._feed(exchange_id)
        delay = 1.0
        while not self.stop:
            try:
                async for batch in feed.watch(stream, symbol):
                    self.stage(batch.stream, batch.records)
                    if batch.events is not None and len(batch.events):
                        self.stage("capture_events", batch.events)
                    if self._staged[batch.stream] >= self.batch_records:
                        await self.hand_over(batch.stream)
                    delay = 1.0
                    if self.stopping and not _announces_backfill(batch):
                        return  # between batches: nothing is in flight, so nothing is lost
                return  # the feed ended (a recording is exhausted)
            except EndOfData:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one subscription's failure must not stop the job
                say(
                    f"[capture] {exchange_id} {symbol} {stream}: {type(exc).__name__}: {exc}; "
                    f"restarting in {delay:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                now = self.now_ms()
                iid = self.registry.id_of(exchange_id, symbol) if (exchange_id, symbol) in self.registry else -1
                reason = f"task:{type(exc).__name__}"
                kind = schema.EventKind.RECONNECT
                self.stage(
                    "capture_events", event_rows(kind, stream, iid, now, now, start_ms=now, end_ms=now, reason=reason)
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def run(self) -> None:
        self._cpu_start = time.process_time()
        tasks = [asyncio.ensure_future(self.pump(ex, sym, st)) for ex, sym, st in self.subscriptions]
        stats_every = self.config.capture.stats_interval_s
        next_report = time.monotonic() + stats_every
        try:
            while not self.stop and not (self.deadline is not None and time.time() >= self.deadline):
                if tasks and all(t.done() for t in tasks):
                    break  # every subscription ended: recordings exhausted
                await asyncio.sleep(STAGE_MAX_AGE_S)
                self.take_staged()
                await self.hand_over()
                if time.monotonic() >= next_report:
                    self.report_ring_pressure()
                    next_report += stats_every
        finally:
            await self.stop_feeds(tasks)

    async def stop_feeds(self, tasks: list[asyncio.Future[None]]) -> None:
        """The bounded stop (`STOP_BOUND_S`): the flusher is told to take everything, each subscription may
        finish the call in flight and hand over its batch, the rest are cancelled (what their feeds staged is
        taken below), the exchanges close, and what is staged goes to the rings."""
        self.stopping = True
        for ring in self.rings.values():
            ring.mark_stopping()
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)
        for task in tasks:
            task.cancel()
        for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                say(f"[capture] task {task!r} ended with {result!r}", file=sys.stderr, flush=True)
        for exchange in self.exchanges.values():
            try:
                await asyncio.wait_for(exchange.close(), timeout=CLOSE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - closing is best effort; the data is already staged
                say(f"[capture] close: {exc!r}", file=sys.stderr, flush=True)
        self.take_staged()  # what the feeds hold: every subscription has stopped, so nothing more comes
        self.report_frame_usage()
        # The funding intervals learned while running stay in self.registry: the job gathers every watcher's to
        # world rank 0, which keeps them in instruments.json (capture.run; a watcher's host may hold no landing zone)
        self.report_ring_pressure()
        await self.hand_over(deadline=time.monotonic() + FINAL_HAND_OVER_S)
        self.print_source_counts()

    def take_staged(self) -> None:
        """What the feeds have staged (tickers, trades not processed yet), processed and staged here."""
        for name, feed in self.feeds.items():
            try:
                batches = feed.drain()
            except Exception as exc:  # noqa: BLE001 - one feed's fault must not stop the others' hand-over
                say(f"[capture] draining {name}'s staged calls: {exc!r}", file=sys.stderr, flush=True)
                continue
            for batch in batches:
                self.stage(batch.stream, batch.records)
                self.stage("capture_events", batch.events)

    def report_frame_usage(self) -> None:
        """Replays: frames used and unused per channel as capture_events and a line; below the config's
        `replay.min_use_ratio` the job fails (exit 3), naming the channels that went unused."""
        floor = self.config.replay.min_use_ratio
        for exchange_id, exchange in self.exchanges.items():
            usage = exchange.frame_usage() if hasattr(exchange, "frame_usage") else None
            if usage is None:
                continue
            self.stage("capture_events", usage.events(int(time.time() * 1000)))
            say(f"[capture] replay frames {usage.line()}", flush=True)
            if usage.use_ratio < floor:
                self.exit_code = EXIT_UNUSED
                say(
                    f"[capture] replay {exchange_id}: {100 * usage.use_ratio:.1f} % of the recording's frames used, "
                    f"below replay.min_use_ratio {floor:g}; subscribe the channels named unused above, or set "
                    "replay.min_use_ratio: 0 to accept it",
                    file=sys.stderr,
                    flush=True,
                )

    def print_source_counts(self) -> None:
        """What each source says it sent (the simulator keeps an exact record) and what each feed counted,
        one JSON line per watcher: the figures a run is checked against; `cpu_s` is this rank's CPU from the
        start of `run` (what a benchmark divides by the messages it landed)."""
        cpu_s = round(time.process_time() - self._cpu_start, 3)
        report: dict[str, Any] = {"rank": self.rank, "feeds": {}, "sources": {}, "cpu_s": cpu_s}
        for exchange_id, feed in self.feeds.items():
            report["feeds"][exchange_id] = {k: int(v) for k, v in getattr(feed, "counts", {}).items()}
            exchange = self.exchanges[exchange_id]
            counters = {}
            for name in ("emitted", "faults_injected", "lost"):
                counter = getattr(exchange, name, None)
                if counter:
                    counters[name] = {"|".join(map(str, key)): int(n) for key, n in counter.items()}
            report["sources"][exchange_id] = counters
        say(f"[capture] source counts {json.dumps(report, sort_keys=True)}", flush=True)


def _announces_backfill(batch: Any) -> bool:
    """A closed trades/ohlcv gap: the Feed fetches its REST backfill right after this batch, so take it too."""
    if batch.stream not in ("trades", "ohlcv") or batch.events is None or not len(batch.events):
        return False
    return bool((batch.events["kind"] == int(schema.EventKind.GAP)).any())
