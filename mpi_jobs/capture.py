"""The long-lived capture job: `mpiexec -n N python -m mpi_jobs.capture --config FILE`.

Rank roles. `COMM_WORLD` is split by shared memory (`COMM_TYPE_SHARED`): on each node local rank 0 is the
*flusher* (`flusher_loop.FlusherLoop`), every other rank a *watcher* (`watcher.Watcher`). The configured
subscriptions (exchange x symbol x stream) are dealt round-robin over all watchers of all nodes. A watcher
copies its feeds' record batches into its shared-memory rings (`ring.Ring`, one per market stream plus one for
capture_events); the flusher drains every ring of its node into the landing zone (`flush.Flusher`).
Several hosts (`capture.hostfile`): with `capture.landing: each_host` every host's flusher writes to the
data folder (a shared filesystem); with `first_host` only the first host's does, and every other host's
local rank 0 forwards what it drains over MPI instead (`forward.py`; the first host may then run its
flusher alone).

Start: world rank 0 takes the landing directory's lock (`lock.CaptureLock`: one capture job per landing
directory; a second one exits 2 at once naming the running job's pid), loads the markets, checks the
configured symbols, registers them (keeping the ids already in `<data_dir>/instruments.json`), saves the
registry and broadcasts it, so ids agree across ranks.

Stopping: SIGTERM/SIGINT (hydra's mpiexec forwards both to every rank), the launcher's death, `--duration` or
the end of a recording. Every rank finishes within `capture.shutdown_timeout_s` whatever storage does (see
`flusher_loop`). Exit code 0: everything captured landed; 75: storage failed at the end and the rest is in a
recovery file that the next start lands; 1: an error, or records lost (the last line says how many).

Collectives: after start-up every rank runs its role, which returns instead of raising, then all ranks make
the same collective calls in the same order (barrier, window frees, the exit-code reduction). An unexpected
error in a role aborts the whole job (`MPI_Abort`) rather than leave one rank in a collective that the
others never reach.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import ConfigError, FundarbConfig, check_symbols
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.sources import open_exchange

from .control import EVENT_RING_RECORDS, EXIT_CONFIG, EXIT_ERROR, RING_STREAMS, StopFlag, ring_capacity, say
from .flusher_loop import FlusherLoop, Outcome
from .forward import Forwarder, Intake
from .launcher import resolve_config
from .lock import CaptureBusy, CaptureLock
from .ring import Ring
from .watcher import Watcher


# -- layout shared by every rank -------------------------------------------------------------------------
@dataclass
class Layout:
    """Who does what, computed identically on every rank."""

    world_rank: int
    world_size: int
    node_index: int
    local_rank: int
    local_size: int
    n_nodes: int
    watchers: list[int]  # world ranks of all watchers, sorted
    local_watchers: list[int]  # world ranks of this node's watchers, in local-rank order
    node_sizes: list[int]  # ranks per node, by node index
    leaders: Any = None  # the flushers' communicator (node index = rank in it); COMM_NULL on watchers
    assignment: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def is_flusher(self) -> bool:
        return self.local_rank == 0


def assign_subscriptions(
    subscriptions: Sequence[tuple[str, str, str]], watchers: Sequence[int], by_exchange: bool = False
) -> dict[int, list[tuple[str, str, str]]]:
    """Deal subscriptions round-robin over watchers (streams of one symbol land on different ranks).

    `by_exchange`: every subscription of an exchange on one watcher (exchanges dealt round-robin), for wire
    replays: each watcher replays its own copy of a recording, so one copy per recording counts each frame
    once, used or unused."""
    out: dict[int, list[tuple[str, str, str]]] = {w: [] for w in watchers}
    exchanges = list(dict.fromkeys(sub[0] for sub in subscriptions))
    for i, sub in enumerate(subscriptions):
        slot = exchanges.index(sub[0]) if by_exchange else i
        out[watchers[slot % len(watchers)]].append(sub)
    return out


def writer_name(node_index: int, world_rank: int) -> str:
    """`<node>-<rank>`: the host name keeps writers of different machines apart on a shared landing zone."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname().split(".")[0]) or f"node{node_index}"
    return f"{host}-{world_rank}"


def landing_note(config: FundarbConfig, layout: Layout) -> str:
    if config.capture.landing == "first_host" and layout.n_nodes > 1:
        return f" by the first host's flusher ({layout.n_nodes - 1} other host(s) forward over MPI)"
    return f" by each node's flusher ({layout.n_nodes})" if layout.n_nodes > 1 else ""


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
    stop = StopFlag.from_environment()
    stop.install()  # before MPI starts: a signal during start-up is honoured, not fatal
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    try:
        config, _ = resolve_config(
            args.config, source=args.source, ranks=world.Get_size(), duration_s=args.duration, data_dir=args.data_dir
        )
    except ConfigError as exc:
        if world.Get_rank() == 0:
            say(f"[capture] config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return run(world, config, args.duration, stop)
    except Exception:  # noqa: BLE001 - one rank failing must not leave the others waiting forever
        traceback.print_exc()
        sys.stderr.flush()
        world.Abort(EXIT_ERROR)
        return EXIT_ERROR


def layout_of(world: Any, node: Any) -> Layout:
    """Rank roles from the shared-memory split (collective on `world` and `node`)."""
    from mpi4py import MPI

    rank, size = world.Get_rank(), world.Get_size()
    local_rank, local_size = node.Get_rank(), node.Get_size()
    leaders = world.Split(0 if local_rank == 0 else MPI.UNDEFINED, key=rank)
    node_index = leaders.Get_rank() if local_rank == 0 else -1
    node_index = node.bcast(node_index, root=0)
    roles = world.allgather((local_rank, node_index, local_size))
    watchers = [r for r, (local, _, _) in enumerate(roles) if local != 0]
    local_watchers = node.allgather(rank)[1:]
    node_sizes = [n for local, _, n in sorted(roles, key=lambda role: role[1]) if local == 0]
    return Layout(
        rank, size, node_index, local_rank, local_size, len(node_sizes), watchers, local_watchers, node_sizes, leaders
    )


def layout_error(layout: Layout, landing: str) -> str | None:
    """Why these ranks cannot run the job (the same answer on every rank), or None."""
    # With landing first_host the first host may hold its flusher alone: the other hosts' watchers feed it.
    exempt = {0} if landing == "first_host" and layout.n_nodes > 1 else set()
    short = [i for i, n in enumerate(layout.node_sizes) if n < 2 and i not in exempt]
    if not layout.watchers or short:
        return (
            "ranks: every node needs a flusher and at least one watcher "
            f"(ranks per node {layout.node_sizes}); start more ranks"
        )
    return None


def start_up(world: Any, config: FundarbConfig, lock: CaptureLock) -> tuple[str, Any]:
    """World rank 0: take the landing directory's lock, then build the registry. Broadcast to every rank:
    ("ok", registry dict) or ("config" | "error", message)."""
    outcome: tuple[str, Any] = ("ok", None)
    if world.Get_rank() == 0:
        try:
            stale = lock.acquire(launcher_pid=os.environ.get("FUNDARB_LAUNCHER_PID"))
            if stale.get("pid"):
                say(f"[capture] took over the lock of a stopped capture job (pid {stale['pid']}, {stale.get('host')})")
            outcome = ("ok", asyncio.run(build_registry(config)).to_dict())
        except (ConfigError, CaptureBusy) as exc:
            outcome = ("config", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported on every rank below, then a clean exit
            outcome = ("error", f"{type(exc).__name__}: {exc}")
    return world.bcast(outcome, root=0)


def run(world: Any, config: FundarbConfig, duration_s: float | None, stop: StopFlag) -> int:
    from mpi4py import MPI

    rank = world.Get_rank()
    node = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    layout = layout_of(world, node)
    error = layout_error(layout, config.capture.landing)
    if error:
        if rank == 0:
            say(f"[capture] config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    subscriptions = config.subscriptions()
    layout.assignment = assign_subscriptions(subscriptions, layout.watchers, by_exchange=config.source == "wire")
    lock = CaptureLock(config.data_dir)
    outcome = start_up(world, config, lock)
    if outcome[0] != "ok":
        if rank == 0:
            kind = "config error" if outcome[0] == "config" else "start-up failed"
            say(f"[capture] {kind}: {outcome[1]}", file=sys.stderr)
        lock.release()
        return EXIT_CONFIG if outcome[0] == "config" else EXIT_ERROR
    registry = InstrumentRegistry.from_dict(outcome[1])
    start = world.bcast(time.time(), root=0)
    deadline = None if duration_s is None else start + duration_s
    if rank == 0:
        say(
            f"[capture] source {config.source}: {len(subscriptions)} subscriptions over {len(layout.watchers)} "
            f"watcher(s) on {layout.n_nodes} node(s) {layout.node_sizes}; landing in "
            f"{os.path.abspath(config.data_dir)}{landing_note(config, layout)}; "
            f"clock start {start:.3f}"
        )

    # Rings: collectively on each node, in the same order everywhere: per local watcher, per stream.
    rings: dict[tuple[int, str], Ring] = {}
    for watcher in layout.local_watchers:
        for stream in RING_STREAMS:
            capacity = EVENT_RING_RECORDS if stream == "capture_events" else ring_capacity(stream, config.capture)
            rings[(watcher, stream)] = Ring.create(node, schema.dtype_of(stream), capacity, owner=0)
    result, learned = play_role(world, config, layout, registry, rings, stop, deadline, start)
    # Every rank is here (or the job was aborted): the same collectives, in the same order, on every rank.
    node.Barrier()
    for ring in rings.values():
        ring.free()
    node.Free()
    if layout.leaders != MPI.COMM_NULL:
        layout.leaders.Free()
    # Funding intervals the watchers learned while running (REST at start, a documented schedule, inferences),
    # marked by source, into instruments.json on the landing host: the next run and the warehouse start from them.
    gathered = world.gather(learned, root=0)
    if rank == 0:
        for intervals in filter(None, gathered):
            InstrumentRegistry.from_dict(intervals).persist_intervals(registry_path(config.data_dir))
    code = world.allreduce(result.code, op=MPI.MAX)
    spilled = world.allreduce(result.spilled, op=MPI.SUM)
    lost = world.allreduce(result.lost, op=MPI.SUM)
    lock.release()
    if rank == 0 and (stop.poll(force=True) or spilled or lost):
        if lost:
            summary = f"{lost:,} records LOST (storage failed and no recovery file could be written)"
        elif spilled:
            summary = f"{spilled:,} records not landed, kept in recovery files that the next start lands"
        else:
            summary = "every ring drained and flushed"
        say(f"[capture] stopped by {stop.describe()}: {summary}")
    return code


def play_role(
    world: Any,
    config: FundarbConfig,
    layout: Layout,
    registry: InstrumentRegistry,
    rings: dict[tuple[int, str], Ring],
    stop: StopFlag,
    deadline: float | None,
    start: float,
) -> tuple[Outcome, dict[str, Any] | None]:
    """Run this rank's role to its end: its outcome, and a watcher's registry (with the intervals it learned).
    Never raises (an unexpected error aborts the job, see the module doc)."""
    try:
        if layout.is_flusher:
            writer = writer_name(layout.node_index, layout.world_rank)
            forwarding = config.capture.landing == "first_host" and layout.n_nodes > 1
            forwarder = intake = None
            if forwarding and layout.node_index == 0:
                intake = Intake(layout.leaders)
            elif forwarding:
                forwarder = Forwarder(layout.leaders, writer, max_pending_records=config.capture.max_pending_records)
            loop = FlusherLoop(
                config,
                rings,
                stop,
                node_index=layout.node_index,
                writer=writer,
                names=registry.names(),
                deadline=deadline,
                spill_prefix=writer.rsplit("-", 1)[0] + "-",  # this host's recovery files, whatever rank wrote them
                forwarder=forwarder,
                intake=intake,
            )
            outcome = loop.run()
            if outcome.abandoned:  # a watcher is stuck: no collective can be joined, end the whole job
                world.Abort(outcome.code or EXIT_ERROR)
            if forwarder is not None:
                forwarder.finish()
            return outcome, None
        mine = {stream: rings[(layout.world_rank, stream)] for stream in RING_STREAMS}
        watcher = Watcher(
            config, registry, layout.assignment[layout.world_rank], mine, stop, deadline, clock_start=start,
            rank=layout.world_rank,
        )  # fmt: skip
        try:
            asyncio.run(watcher.run())
        finally:
            for ring in mine.values():
                ring.close()
        return Outcome(watcher.exit_code), watcher.registry.to_dict()
    except BaseException:  # noqa: BLE001 - see the module docstring: abort, never a mismatched collective
        traceback.print_exc()
        sys.stderr.flush()
        world.Abort(EXIT_ERROR)
        raise


if __name__ == "__main__":
    sys.exit(main())
