"""The flusher rank of a node: drain every ring, land what it drained, report, and stop within a bound.

The loop drains the rings of its node's watchers into a `flush.Flusher` and runs a flush round whenever one
is due. While the pending records are at `capture.max_pending_records` (storage failing for a long time) it
stops taking market records from the rings, so watchers wait on full rings (`block`) or drop and count
(`drop_newest`); the small `capture_events` ring is always drained.

Stopping is bounded by `capture.shutdown_timeout_s` (T) from the stop (a signal, the launcher gone, the end of
`--duration` or of a recording). Once stopping, the flusher takes everything the rings hold. Watchers close
their rings within `watcher.STOP_BOUND_S`; the flusher lands what it holds, retrying failed files until
T - `SPILL_RESERVE_S`, then writes what is left to a recovery file (`Flusher.spill`), which the next start on
the landing zone lands first. If the recovery file cannot be written either, the final line and the exit
code say exactly how many records were lost. If a watcher never closed its rings, the flusher reports it and
the caller aborts the job instead of waiting in a collective.

`capture_stats` rows and the flusher's own events carry the data's clock when the source is simulated or
replayed (the newest receive time drained, i.e. the source's clock), wall time for live sources.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fundarb_dagster.core import schema
from fundarb_dagster.core.config import FundarbConfig

from .control import EXIT_ERROR, EXIT_OK, EXIT_SPILLED, StopFlag, say
from .flush import Flusher, FlushResult
from .forward import Forwarder, Intake
from .ring import Backoff, Ring
from .watcher import STOP_BOUND_S

SPILL_RESERVE_S = 2.0  # of the shutdown bound, kept for writing the recovery file and exiting
RING_WAIT_S = STOP_BOUND_S + 1.0  # how long a stopping flusher waits for every watcher to close its rings


@dataclass
class _RingStats:
    last_written: int = 0
    last_t: float = 0.0
    rate: float = 0.0
    reconnects: int = 0


@dataclass
class Outcome:
    """How the flusher rank ended: its exit code, records kept in a recovery file, records lost."""

    code: int = EXIT_OK
    spilled: int = 0
    lost: int = 0
    abandoned: bool = False  # a watcher never closed its rings: the job must be aborted, not joined


class FlusherLoop:
    """The node's flusher rank: drain every ring, flush on time/hour boundaries, report, stop in bounded time."""

    def __init__(
        self,
        config: FundarbConfig,
        rings: dict[tuple[int, str], Ring],
        stop: StopFlag,
        *,
        node_index: int,
        writer: str,
        names: Mapping[int, tuple[str, str]],
        deadline: float | None = None,
        spill_prefix: str | None = None,
        forwarder: Forwarder | None = None,
        intake: Intake | None = None,
    ) -> None:
        self.config = config
        self.node_index = node_index
        self.rings = rings
        self.stop = stop
        self.deadline = deadline
        self.live_clock = config.source == "live"
        self.data_clock_ms: int | None = None
        self.shutdown_timeout_s = config.capture.shutdown_timeout_s
        # A forwarding host (capture.landing first_host) sends what it drains to the first host's flusher, whose
        # `intake` takes it in beside its own rings (forward.py).
        self.flusher: Flusher | Forwarder = forwarder or Flusher(
            config.data_dir,
            writer,
            names,
            flush_interval_s=config.capture.flush_interval_s,
            max_pending_records=config.capture.max_pending_records,
            event_clock_ms=self.clock_ms,
        )
        self.intake = intake
        self.recovery_files = self.flusher.recover_spills(spill_prefix)
        self.stats = {key: _RingStats(last_t=time.monotonic()) for key in rings}
        self.events_by_kind: dict[str, int] = {}
        self.frames: dict[str, dict[str, int]] = {"used": {}, "unused": {}}  # replays: frames per channel
        self.flush_latencies: list[float] = []
        self.started = time.monotonic()
        self.stop_at: float | None = None

    # -- clocks ---------------------------------------------------------------------------------------------
    def clock_ms(self) -> int:
        """The data's clock for simulated and replayed sources, wall time for live ones (or before any data)."""
        if self.live_clock or self.data_clock_ms is None:
            return int(time.time() * 1000)
        return self.data_clock_ms

    def _stopping(self) -> bool:
        if self.stop_at is None and (self.stop or (self.deadline is not None and time.time() >= self.deadline)):
            self.stop_at = time.monotonic()
        return self.stop_at is not None

    # -- draining -------------------------------------------------------------------------------------------
    def drain(self, take_all: bool = True) -> int:
        """Move ring records to the flusher; unless `take_all`, market records only up to the pending bound."""
        moved = 0
        flusher = self.flusher
        for (watcher, stream), ring in self.rings.items():
            if take_all or stream == "capture_events" or ring.stopping:
                records = ring.pop()
            else:
                room = flusher.max_pending_records - flusher.pending()
                if room <= 0:
                    continue  # the ring fills up: its watcher waits or drops, and counts it
                records = ring.pop(room)
            if not len(records):
                continue
            moved += self._take(watcher, stream, records)
        if self.intake is not None:
            room = None if take_all else max(0, flusher.max_pending_records - flusher.pending())
            if room != 0:
                for stream, records in self.intake.receive(room):
                    moved += self._take(None, stream, records)
        return moved

    def _take(self, watcher: int | None, stream: str, records: np.ndarray) -> int:
        self.flusher.add(stream, records)
        if stream == "capture_events":
            self._count_events(watcher, records)
        elif not self.live_clock and stream != "capture_stats":
            newest = int(records["recv_ts_ms"].max())
            if self.data_clock_ms is None or newest > self.data_clock_ms:
                self.data_clock_ms = newest
        return len(records)

    def _count_events(self, watcher: int | None, events: np.ndarray) -> None:
        for kind, stream_code, count, reason in zip(
            events["kind"], events["stream"], events["count"], events["reason"], strict=True
        ):
            name = schema.EventKind(int(kind)).name
            self.events_by_kind[name] = self.events_by_kind.get(name, 0) + int(count)
            if int(kind) in (schema.EventKind.USED, schema.EventKind.UNUSED):
                tally = self.frames[name.lower()]  # reason: "<exchange> <channel>"
                tally[reason.decode()] = tally.get(reason.decode(), 0) + int(count)
            if int(kind) == schema.EventKind.RECONNECT:
                stream = schema.STREAM_NAMES.get(int(stream_code))
                if (watcher, stream) in self.stats:
                    self.stats[(watcher, stream)].reconnects += int(count)

    # -- flushing -------------------------------------------------------------------------------------------
    def flush_round(self, ignore_backoff: bool = False) -> FlushResult:
        """One flush round; failed files stay pending (retried with back-off) and are reported on one line."""
        result = self.flusher.flush(ignore_backoff=ignore_backoff)
        if result.records:
            self.flush_latencies.append(result.seconds)
        if result.failures:
            first = result.failures[0]
            say(
                f"[capture] flush: {len(result.failures)} file(s) failed ({first.error}: {first.message}); "
                f"{self.flusher.pending():,} records pending, retried with back-off",
                file=sys.stderr,
            )
        return result

    # -- statistics -----------------------------------------------------------------------------------------
    def sample_stats(self) -> np.ndarray:
        """One capture_stats row per (watcher, market stream), from the rings' shared counters."""
        now = time.monotonic()
        keys = [k for k in self.rings if k[1] in schema.MARKET_STREAMS]
        rows = schema.empty("capture_stats", len(keys))
        when_ms = self.clock_ms()
        latency_ms = self.flusher.last_latency_s * 1000.0
        for i, key in enumerate(keys):
            ring, st = self.rings[key], self.stats[key]
            written = ring.written
            st.rate = (written - st.last_written) / max(now - st.last_t, 1e-9)
            st.last_written, st.last_t = written, now
            row = rows[i]
            row["ts_ms"] = row["recv_ts_ms"] = when_ms
            row["node"] = self.node_index
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
        flusher = self.flusher
        drops = sum(ring.drops for ring in self.rings.values())
        storage = f"pending {flusher.pending():,}"
        if flusher.failures:
            storage += f" ({flusher.failing()} files failing, {flusher.failures} flush failures)"
        head = f"[capture {time.strftime('%H:%M:%S')}] node {self.node_index}"
        if final:
            elapsed = time.monotonic() - self.started
            landed = " ".join(f"{s}={n}" for s, n in flusher.written.items() if n)
            lat = self.flush_latencies
            lat_txt = f"{1000 * float(np.median(lat)):.1f}/{1000 * max(lat):.1f} ms" if lat else "n/a"
            events = dict(self.events_by_kind)
            replayed = any(self.frames.values())
            if flusher.failures:
                events["FLUSH_FAILED"] = flusher.failures
            return (
                f"{head} TOTAL {elapsed:.1f} s: messages "
                + " ".join(f"{s}={n}" for s, n in totals.items())
                + f" | {self._verb()} {landed} | files flushes={flusher.flushes} bytes={flusher.bytes_written}"
                + f" | flush median/max {lat_txt} | drops {drops} waits {int(rows['waits'].sum())}"
                + f" | events {dict(sorted(events.items()))}"
                + (f" | frames used {self.frames['used']} unused {self.frames['unused']}" if replayed else "")
                + self._stop_note()
            )
        fill = float(rows["ring_fill_pct"].max()) if len(rows) else 0.0
        rates = " ".join(f"{s} {r:,.0f}/s" for s, r in per_stream.items())
        return (
            f"{head}: {rates} | ring max {fill:.1f}% | flush {1000 * flusher.last_latency_s:.1f} ms"
            f" | drops {drops} waits {int(rows['waits'].sum())} reconnects {int(rows['reconnects'].sum())}"
            f" | {self._verb()} {sum(flusher.written.values())} | {storage}"
        )

    def _verb(self) -> str:
        return "forwarded" if isinstance(self.flusher, Forwarder) else "landed"

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> Outcome:
        recovering = f", landing {self.flusher.pending():,} records of {len(self.recovery_files)} recovery file(s)"
        say(
            f"[capture] node {self.node_index} flusher: {len({w for w, _ in self.rings})} watcher(s), writer "
            f"{self.flusher.writer} from seq {self.flusher.seq}, {self.flusher.stale_removed} stale temporaries "
            f"removed{recovering if self.recovery_files else ''}"
        )
        abandoned = self._loop()
        outcome = self._finish()
        outcome.abandoned = abandoned
        return outcome

    def _loop(self) -> bool:
        """Drain and flush until every ring is closed; True when the watchers did not close them in time."""
        backoff = Backoff(spins=0, max_sleep_s=0.005)
        stats_every = self.config.capture.stats_interval_s
        next_stats = time.monotonic() + stats_every
        while True:
            stopping = self._stopping()
            # Read `closed` before draining: a ring closed before this drain is empty after it.
            all_closed = all(ring.closed for ring in self.rings.values())
            remote_done = self.intake is None or self.intake.all_done
            moved = self.drain(take_all=stopping or all_closed)
            if all_closed and remote_done:
                return False
            if self.stop_at is not None and time.monotonic() >= self.stop_at + RING_WAIT_S + self._remote_wait_s():
                open_rings = sorted({w for (w, _), ring in self.rings.items() if not ring.closed})
                missing = (
                    "" if remote_done else f"; {self.intake.forwarders - len(self.intake.done)} forwarding host(s)"
                )
                say(
                    f"[capture] watcher rank(s) {open_rings}{missing} did not stop within {RING_WAIT_S:g} s",
                    file=sys.stderr,
                )
                return True
            if self.flusher.due():
                self.flush_round()
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + stats_every
                if self.live_clock or self.data_clock_ms is not None:  # no data yet: nothing on its clock
                    rows = self.sample_stats()
                    self.flusher.add("capture_stats", rows)
                    say(self.progress_line(rows))
            if moved:
                backoff.reset()
            else:
                backoff.pause()

    def _stop_note(self) -> str:
        """How long the stop took on this rank's clock, against its bound: what an operator (and the shutdown test,
        whatever mpiexec and the processes' exit add on a loaded machine) checks the bound with."""
        if self.stop_at is None:
            return ""
        return f" | stopped in {time.monotonic() - self.stop_at:.1f} s (bound {self.shutdown_timeout_s:g} s)"

    def _remote_wait_s(self) -> float:
        """A forwarding host stops like a watcher, then sends what it holds: one flush interval more."""
        return 0.0 if self.intake is None else self.config.capture.flush_interval_s

    def _finish(self) -> Outcome:
        """Land what is held until the deadline, retrying failed files; spill the rest; the final line."""
        if self.stop_at is None:
            self.stop_at = time.monotonic()
        rows = self.sample_stats()
        self.flusher.add("capture_stats", rows)
        deadline = self.stop_at + self.shutdown_timeout_s - SPILL_RESERVE_S
        attempts = 0
        while self.flusher.pending() and (attempts == 0 or time.monotonic() < deadline):
            attempts += 1
            self.flush_round(ignore_backoff=True)
            if self.flusher.pending():
                time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
        outcome = Outcome()
        tail = ""
        if self.flusher.unsaved():
            unsaved = self.flusher.unsaved()
            try:
                outcome.spilled, path = self.flusher.spill()
                tail = f" | NOT LANDED: {outcome.spilled:,} records kept in {path}, landed at the next start"
            except OSError as exc:
                outcome.lost = unsaved
                tail = f" | LOST {unsaved:,} records: storage failed and the recovery file could not be written ({exc})"
        if self.flusher.pending():  # records of earlier recovery files still there, in their own files
            tail += f" | {self.flusher.pending():,} records stay in earlier recovery files"
        short = self.intake.check() if self.intake is not None else []
        if short:  # cannot happen over MPI's reliable delivery; said and failed, never silent
            outcome.lost = outcome.lost or 1
            tail += f" | FORWARDED RECORDS MISSING: {'; '.join(short)}"
        outcome.code = EXIT_ERROR if outcome.lost else EXIT_SPILLED if outcome.spilled or tail else EXIT_OK
        say(self.progress_line(rows, final=True) + tail)
        return outcome
