"""The long-lived capture job: `mpiexec -n N python -m mpi_jobs.capture --config FILE`.

Rank roles. `COMM_WORLD` is split by shared memory (`COMM_TYPE_SHARED`): on each node local rank 0 is the
*flusher*, every other rank a *watcher*. The configured subscriptions (exchange x symbol x stream) are dealt
round-robin over all watchers of all nodes. A watcher runs one asyncio loop with one exchange object per
exchange it serves and one `Feed.watch(stream, symbol)` task per subscription; it copies the record batches
into its shared-memory rings (`ring.Ring`, one per market stream plus one for capture_events). The flusher
drains every ring of its node and writes them to the landing zone (`flush.Flusher`).

Ids agree across ranks: rank 0 loads the markets, checks the configured symbols, registers them (keeping the
ids already in `<data_dir>/instruments.json`), saves the registry and broadcasts it.

Stopping: SIGTERM/SIGINT (hydra's mpiexec forwards both to every rank), `--duration` or the end of a
recording. Watchers cancel their feeds, push what they hold, and close their rings; the flusher keeps
draining until every ring of its node is closed and empty, flushes, prints the totals and exits 0: nothing
captured is lost. Statistics (`capture_stats`) are computed by the flusher from the counters the rings keep
in shared memory (head, waits, drops) plus the reconnect events it drains, so watchers never pay for them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import ConfigError, FundarbConfig, check_symbols
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.sources import EndOfData, open_exchange

from .flush import Flusher
from .launcher import resolve_config
from .ring import Backoff, Ring

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
RING_STREAMS: tuple[str, ...] = (*schema.MARKET_STREAMS, "capture_events")
EVENT_RING_RECORDS = 8192
STOP_GRACE_S = 3.0  # at a stop, how long subscriptions may take to return the call in flight (busy hosts are slow)
STAGE_MAX_AGE_S = 0.05  # a watcher hands small batches to its rings at least this often


# -- stop flag ---------------------------------------------------------------------------------------------
class StopFlag:
    """Set by SIGTERM/SIGINT; every loop polls it. The handler only sets a flag (async-signal-safe)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum


# -- layout shared by every rank -------------------------------------------------------------------------
@dataclass
class Layout:
    """Who does what, computed identically on every rank."""

    world_rank: int
    world_size: int
    node_index: int
    local_rank: int
    local_size: int
    watchers: list[int]  # world ranks of all watchers, sorted
    local_watchers: list[int]  # world ranks of this node's watchers, in local-rank order
    assignment: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def is_flusher(self) -> bool:
        return self.local_rank == 0


def assign_subscriptions(
    subscriptions: Sequence[tuple[str, str, str]], watchers: Sequence[int]
) -> dict[int, list[tuple[str, str, str]]]:
    """Deal subscriptions round-robin over watchers (streams of one symbol land on different ranks)."""
    out: dict[int, list[tuple[str, str, str]]] = {w: [] for w in watchers}
    for i, sub in enumerate(subscriptions):
        out[watchers[i % len(watchers)]].append(sub)
    return out


def writer_name(node_index: int, world_rank: int) -> str:
    """`<node>-<rank>`: the host name keeps writers of different machines apart on a shared landing zone."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname().split(".")[0]) or f"node{node_index}"
    return f"{host}-{world_rank}"


def make_exchange(config: FundarbConfig, exchange_id: str, clock_start: float | None = None) -> Any:
    """The exchange object of a watcher. Simulated venues on every rank share one virtual clock, started
    at the job's broadcast start time, so all ranks see the same market moment."""
    if config.source == "sim" and clock_start is not None:
        from fundarb_dagster.core.sources.sim import SimExchange

        symbols = next(e.symbols for e in config.exchanges if e.id == exchange_id)
        return SimExchange(exchange_id, config.sim, symbols=symbols, wall_start=clock_start)
    return open_exchange(config, exchange_id)


# -- registry ----------------------------------------------------------------------------------------------
async def build_registry(config: FundarbConfig) -> InstrumentRegistry:
    """Load every exchange's markets, check the symbols, register them (keeping saved ids), save."""
    path = registry_path(config.data_dir)
    registry = InstrumentRegistry.load(path)
    for exchange_config in config.exchanges:
        exchange = open_exchange(config, exchange_config.id)
        try:
            markets = await exchange.load_markets()
            check_symbols(config, exchange_config.id, markets)
            registry.add_markets(exchange_config.id, markets, list(exchange_config.symbols))
        finally:
            await exchange.close()
    registry.save(path)
    return registry


# -- watcher -----------------------------------------------------------------------------------------------
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

    # the ring side ------------------------------------------------------------------------------------
    def stage(self, stream: str, records: np.ndarray) -> None:
        if len(records):
            self._stage[stream].append(records)
            self._staged[stream] += len(records)

    async def hand_over(self, stream: str | None = None) -> None:
        """Push staged records to the rings (one stream, or all)."""
        for name in RING_STREAMS if stream is None else (stream,):
            if not self._staged[name]:
                continue
            chunks = self._stage[name]
            records = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            self._stage[name] = []
            self._staged[name] = 0
            await self.push(name, records)

    async def push(self, stream: str, records: np.ndarray) -> None:
        """Into the ring; on a full ring wait (yielding to the other tasks) or, under drop_newest, drop."""
        ring = self.rings[stream]
        done = ring.try_push(records)
        if done == len(records):
            return
        # Events are never dropped: they are how drops are reported.
        if self.drop and stream != "capture_events":
            ring.count_drops(len(records) - done)
            return
        ring.count_wait()
        self._backoff.reset()
        try:
            while done < len(records):
                await asyncio.sleep(self._backoff.delay_s())
                done += ring.try_push(records[done:])
        except asyncio.CancelledError:
            # Cancelled while waiting for room: what is not in the ring goes back to the front of the stage,
            # where the final hand-over at shutdown finds it.
            self._stage[stream].insert(0, records[done:])
            self._staged[stream] += len(records) - done
            raise

    def report_ring_pressure(self) -> None:
        """DROPPED and BACKPRESSURE events for what the rings counted since the last report."""
        now = int(time.time() * 1000)
        rows = []
        for stream in schema.MARKET_STREAMS:
            ring = self.rings[stream]
            for kind, total, seen in (
                (schema.EventKind.DROPPED, ring.drops, self._drops_reported),
                (schema.EventKind.BACKPRESSURE, ring.waits, self._waits_reported),
            ):
                if total > seen[stream]:
                    rows.append((stream, kind, total - seen[stream]))
                    seen[stream] = total
        if rows:
            events = schema.empty("capture_events", len(rows))
            events["ts_ms"] = events["recv_ts_ms"] = events["start_ms"] = events["end_ms"] = now
            events["instrument_id"] = -1
            events["stream"] = [int(schema.STREAM_CODES[s]) for s, _, _ in rows]
            events["kind"] = [int(k) for _, k, _ in rows]
            events["count"] = [n for _, _, n in rows]
            events["reason"] = [
                b"ring full: drop_newest" if k == schema.EventKind.DROPPED else b"ring full" for _, k, _ in rows
            ]
            self.stage("capture_events", events)

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
                # Gaps in trades/ohlcv are filled from REST history by the Feed itself (GAP_FILLED events).
                backfill_gaps=True,
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
                _say(
                    f"[capture] {exchange_id} {symbol} {stream}: {type(exc).__name__}: {exc}; "
                    f"restarting in {delay:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                self.stage(
                    "capture_events",
                    _event(
                        exchange_id,
                        symbol,
                        stream,
                        self.registry,
                        schema.EventKind.RECONNECT,
                        f"task:{type(exc).__name__}",
                    ),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self.pump(ex, sym, st)) for ex, sym, st in self.subscriptions]
        stats_every = self.config.capture.stats_interval_s
        next_report = time.monotonic() + stats_every
        try:
            while not self.stop and not (self.deadline is not None and time.time() >= self.deadline):
                if tasks and all(t.done() for t in tasks):
                    break  # every subscription ended: recordings exhausted
                await asyncio.sleep(STAGE_MAX_AGE_S)
                await self.hand_over()
                if time.monotonic() >= next_report:
                    self.report_ring_pressure()
                    next_report += stats_every
        finally:
            # Let each subscription finish the call in flight and hand over its batch; cancel the ones
            # still waiting for data after a grace period (they hold nothing yet).
            self.stopping = True
            pending = [t for t in tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in tasks:
                task.cancel()
            for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    _say(f"[capture] task {task!r} ended with {result!r}", file=sys.stderr, flush=True)
            for exchange in self.exchanges.values():
                try:
                    await exchange.close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort; the data is already staged
                    _say(f"[capture] close: {exc!r}", file=sys.stderr, flush=True)
            self.report_ring_pressure()
            await self.hand_over()
            self.print_source_counts()

    def print_source_counts(self) -> None:
        """What each source says it sent (the simulator keeps an exact record) and what each feed counted,
        one JSON line per watcher: the figures a run is checked against."""
        report: dict[str, Any] = {"rank": self.rank, "feeds": {}, "sources": {}}
        for exchange_id, feed in self.feeds.items():
            report["feeds"][exchange_id] = {k: int(v) for k, v in getattr(feed, "counts", {}).items()}
            exchange = self.exchanges[exchange_id]
            counters = {}
            for name in ("emitted", "faults_injected", "lost"):
                counter = getattr(exchange, name, None)
                if counter:
                    counters[name] = {"|".join(map(str, key)): int(n) for key, n in counter.items()}
            report["sources"][exchange_id] = counters
        _say(f"[capture] source counts {json.dumps(report, sort_keys=True)}", flush=True)


def _say(*parts: object, file: Any = None, flush: bool = True) -> None:
    """Print one line with a single write: `print` writes the text and the newline separately, and lines of
    ranks sharing mpiexec's output could interleave between the two."""
    stream = sys.stdout if file is None else file
    stream.write(" ".join(str(p) for p in parts) + "\n")
    if flush:
        stream.flush()


def _announces_backfill(batch: Any) -> bool:
    """A closed trades/ohlcv gap: the Feed fetches its REST backfill right after this batch, so take it too."""
    if batch.stream not in ("trades", "ohlcv") or batch.events is None or not len(batch.events):
        return False
    return bool((batch.events["kind"] == int(schema.EventKind.GAP)).any())


def _event(
    exchange_id: str, symbol: str, stream: str, registry: InstrumentRegistry, kind: schema.EventKind, reason: str
) -> np.ndarray:
    now = int(time.time() * 1000)
    event = schema.empty("capture_events", 1)
    event["ts_ms"] = event["recv_ts_ms"] = event["start_ms"] = event["end_ms"] = now
    event["instrument_id"] = registry.id_of(exchange_id, symbol) if (exchange_id, symbol) in registry else -1
    event["stream"] = int(schema.STREAM_CODES[stream])
    event["kind"] = int(kind)
    event["count"] = 1
    event["reason"] = reason.encode("ascii", "replace")[:48]
    return event


# -- flusher -----------------------------------------------------------------------------------------------
@dataclass
class _RingStats:
    last_written: int = 0
    last_t: float = 0.0
    rate: float = 0.0
    reconnects: int = 0


class FlusherLoop:
    """The node's flusher rank: drain every ring, flush on time/hour boundaries, report, stop cleanly."""

    def __init__(
        self,
        config: FundarbConfig,
        layout: Layout,
        registry: InstrumentRegistry,
        rings: dict[tuple[int, str], Ring],
        stop: StopFlag,
    ) -> None:
        self.config = config
        self.layout = layout
        self.rings = rings
        self.stop = stop
        self.flusher = Flusher(
            config.data_dir,
            writer_name(layout.node_index, layout.world_rank),
            registry.names(),
            flush_interval_s=config.capture.flush_interval_s,
        )
        self.stats = {key: _RingStats(last_t=time.monotonic()) for key in rings}
        self.events_by_kind: dict[str, int] = {}
        self.flush_latencies: list[float] = []
        self.flush_errors = 0
        self.started = time.monotonic()

    def drain(self) -> int:
        moved = 0
        for (watcher, stream), ring in self.rings.items():
            records = ring.pop()
            if not len(records):
                continue
            moved += len(records)
            self.flusher.add(stream, records)
            if stream == "capture_events":
                self._count_events(watcher, records)
        return moved

    def _count_events(self, watcher: int, events: np.ndarray) -> None:
        for kind, stream_code, count in zip(events["kind"], events["stream"], events["count"], strict=True):
            name = schema.EventKind(int(kind)).name
            self.events_by_kind[name] = self.events_by_kind.get(name, 0) + int(count)
            if int(kind) == schema.EventKind.RECONNECT:
                stream = schema.STREAM_NAMES.get(int(stream_code))
                if (watcher, stream) in self.stats:
                    self.stats[(watcher, stream)].reconnects += int(count)

    def flush(self, final: bool = False) -> None:
        """Write what is pending. A failed write (disk full, a vanished mount) keeps the records pending and is
        retried at the next interval, so a transient storage error loses nothing; at the final flush it is
        retried a few times before giving up loudly."""
        for attempt in range(5 if final else 1):
            try:
                result = self.flusher.flush()
            except OSError as exc:
                self.flush_errors += 1
                _say(
                    f"[capture] flush failed ({exc!r}); {self.flusher.pending()} records kept pending, retrying",
                    file=sys.stderr,
                    flush=True,
                )
                if final and attempt < 4:
                    time.sleep(1.0 + attempt)
                    continue
                if final:
                    raise
                return
            if result.files:
                self.flush_latencies.append(result.seconds)
            return

    def sample_stats(self) -> np.ndarray:
        """One capture_stats row per (watcher, market stream), from the rings' shared counters."""
        now = time.monotonic()
        keys = [k for k in self.rings if k[1] in schema.MARKET_STREAMS]
        rows = schema.empty("capture_stats", len(keys))
        wall_ms = int(time.time() * 1000)
        latency_ms = self.flusher.last_latency_s * 1000.0
        for i, key in enumerate(keys):
            ring, st = self.rings[key], self.stats[key]
            written = ring.written
            st.rate = (written - st.last_written) / max(now - st.last_t, 1e-9)
            st.last_written, st.last_t = written, now
            row = rows[i]
            row["ts_ms"] = row["recv_ts_ms"] = wall_ms
            row["node"] = self.layout.node_index
            row["rank"] = key[0]
            row["stream"] = int(schema.STREAM_CODES[key[1]])
            row["messages"] = written
            row["messages_per_s"] = st.rate
            row["ring_fill_pct"] = 100.0 * ring.fill()
            row["flush_latency_ms"] = latency_ms
            row["drops"] = ring.drops
            row["waits"] = ring.waits
            row["reconnects"] = st.reconnects
        return rows

    def progress_line(self, rows: np.ndarray, final: bool = False) -> str:
        per_stream: dict[str, float] = {}
        totals: dict[str, int] = {}
        for row in rows:
            name = schema.STREAM_NAMES[int(row["stream"])]
            per_stream[name] = per_stream.get(name, 0.0) + float(row["messages_per_s"])
            totals[name] = totals.get(name, 0) + int(row["messages"])
        t = time.strftime("%H:%M:%S")
        fill = float(rows["ring_fill_pct"].max()) if len(rows) else 0.0
        head = f"[capture {t}] node {self.layout.node_index}"
        if final:
            elapsed = time.monotonic() - self.started
            landed = " ".join(f"{s}={n}" for s, n in self.flusher.written.items() if n)
            lat = self.flush_latencies
            lat_txt = f"{1000 * float(np.median(lat)):.1f}/{1000 * max(lat):.1f} ms" if lat else "n/a"
            return (
                f"{head} TOTAL {elapsed:.1f} s: messages "
                + " ".join(f"{s}={n}" for s, n in totals.items())
                + f" | landed {landed} | files flushes={self.flusher.flushes} bytes={self.flusher.bytes_written}"
                + f" | flush median/max {lat_txt} | drops {int(rows['drops'].sum())} waits {int(rows['waits'].sum())}"
                + f" | events {dict(sorted(self.events_by_kind.items()))}"
            )
        rates = " ".join(f"{s} {r:,.0f}/s" for s, r in per_stream.items())
        return (
            f"{head}: {rates} | ring max {fill:.1f}% | flush {1000 * self.flusher.last_latency_s:.1f} ms"
            f" | drops {int(rows['drops'].sum())} waits {int(rows['waits'].sum())}"
            f" reconnects {int(rows['reconnects'].sum())} | landed {sum(self.flusher.written.values())}"
        )

    def run(self) -> None:
        _say(
            f"[capture] node {self.layout.node_index} flusher rank {self.layout.world_rank}: "
            f"{len(self.layout.local_watchers)} watcher(s), writer {self.flusher.writer} from seq "
            f"{self.flusher.seq}, {self.flusher.stale_removed} stale temporaries removed",
            flush=True,
        )
        backoff = Backoff(spins=0, max_sleep_s=0.005)
        stats_every = self.config.capture.stats_interval_s
        next_stats = time.monotonic() + stats_every
        while True:
            # Read `closed` before draining: a ring closed before this drain is empty after it.
            all_closed = all(ring.closed for ring in self.rings.values())
            moved = self.drain()
            if all_closed:
                break
            if self.flusher.due():
                self.flush()
            if time.monotonic() >= next_stats:
                rows = self.sample_stats()
                self.flusher.add("capture_stats", rows)
                _say(self.progress_line(rows), flush=True)
                next_stats = time.monotonic() + stats_every
            if moved:
                backoff.reset()
            else:
                backoff.pause()
        rows = self.sample_stats()
        self.flusher.add("capture_stats", rows)
        self.flush(final=True)
        _say(self.progress_line(rows, final=True), flush=True)


# -- main --------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpi_jobs.capture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the embedded sim defaults)")
    parser.add_argument("--source", help="override the config's source kind (sim, replay, wire, live)")
    parser.add_argument("--duration", type=float, help="stop after this many wall seconds")
    parser.add_argument("--data-dir", help="override the config's data folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = StopFlag()
    stop.install()  # before MPI starts: a signal during start-up is honoured, not fatal
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    try:
        config, _ = resolve_config(
            args.config, source=args.source, ranks=world.Get_size(), duration_s=args.duration, data_dir=args.data_dir
        )
    except ConfigError as exc:
        if world.Get_rank() == 0:
            _say(f"[capture] config error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    try:
        return run(world, config, args.duration, stop)
    except Exception:  # noqa: BLE001 - one rank failing must not leave the others waiting forever
        traceback.print_exc()
        sys.stderr.flush()
        world.Abort(EXIT_ERROR)
        return EXIT_ERROR


def run(world: Any, config: FundarbConfig, duration_s: float | None, stop: StopFlag) -> int:
    from mpi4py import MPI

    rank, size = world.Get_rank(), world.Get_size()
    node = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    local_rank, local_size = node.Get_rank(), node.Get_size()
    leaders = world.Split(0 if local_rank == 0 else MPI.UNDEFINED, key=rank)
    node_index = leaders.Get_rank() if local_rank == 0 else -1
    node_index = node.bcast(node_index, root=0)
    if leaders != MPI.COMM_NULL:
        leaders.Free()
    roles = world.allgather(local_rank)
    n_nodes = sum(1 for local in roles if local == 0)
    watchers = [r for r, local in enumerate(roles) if local != 0]
    local_watchers = node.allgather(rank)[1:]
    layout = Layout(rank, size, node_index, local_rank, local_size, watchers, local_watchers)
    if not watchers or local_size < 2:
        if rank == 0:
            _say(
                "[capture] config error: ranks: every node needs a flusher and at least one watcher "
                f"(got {local_size} rank(s) on a node); start more ranks",
                file=sys.stderr,
                flush=True,
            )
        return EXIT_CONFIG
    subscriptions = config.subscriptions()
    layout.assignment = assign_subscriptions(subscriptions, watchers)

    # Rank 0 builds the registry; everyone gets the same ids.
    outcome: tuple[str, Any] = ("ok", None)
    if rank == 0:
        try:
            outcome = ("ok", asyncio.run(build_registry(config)).to_dict())
        except ConfigError as exc:
            outcome = ("config", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported on every rank below, then a clean exit
            outcome = ("error", f"{type(exc).__name__}: {exc}")
    outcome = world.bcast(outcome, root=0)
    if outcome[0] != "ok":
        if rank == 0:
            _say(
                f"[capture] {'config error' if outcome[0] == 'config' else 'start-up failed'}: {outcome[1]}",
                file=sys.stderr,
                flush=True,
            )
        return EXIT_CONFIG if outcome[0] == "config" else EXIT_ERROR
    registry = InstrumentRegistry.from_dict(outcome[1])
    start = world.bcast(time.time(), root=0)
    deadline = None if duration_s is None else start + duration_s
    if rank == 0:
        _say(
            f"[capture] source {config.source}: {len(subscriptions)} subscriptions over {len(watchers)} watcher(s) "
            f"on {n_nodes} node(s); landing in {os.path.abspath(config.data_dir)}; clock start {start:.3f}",
            flush=True,
        )

    # Rings: collectively on each node, in the same order everywhere: per local watcher, per stream.
    rings: dict[tuple[int, str], Ring] = {}
    capacity = config.capture.ring_records
    try:
        for watcher in local_watchers:
            for stream in RING_STREAMS:
                cap = EVENT_RING_RECORDS if stream == "capture_events" else capacity
                rings[(watcher, stream)] = Ring.create(node, schema.dtype_of(stream), cap, owner=0)
        if layout.is_flusher:
            FlusherLoop(config, layout, registry, rings, stop).run()
        else:
            mine = {stream: rings[(rank, stream)] for stream in RING_STREAMS}
            watcher = Watcher(
                config, registry, layout.assignment[rank], mine, stop, deadline, clock_start=start, rank=rank
            )
            try:
                asyncio.run(watcher.run())
            finally:
                for ring in mine.values():
                    ring.close()
        node.Barrier()
    finally:
        for ring in rings.values():
            ring.free()
    node.Free()
    if rank == 0 and stop.signal is not None:
        _say(f"[capture] stopped by {signal.Signals(stop.signal).name}: every ring drained and flushed", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
