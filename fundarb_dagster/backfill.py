"""`fundarb backfill`: landed history (years of imports) materialized in one command, in bounded runs.

The range is cut at the newest landed day: the months holding the days before it go to `history_job` (the
hourly stage's tables, `funding_spreads` and the 8h/1d bars on monthly partitions, `defs/history.py`) in runs
of at most `HISTORY_RUN_MONTHS` months (the last month, still partial, is loaded as far as it has landed);
the newest day's hours go to the stage jobs of the live path (`defs/jobs.py`: `hourly_job` for the raw tables,
bars and funding, then `signals_job` for `funding_spreads` and what follows) in runs of at most
`MAX_RUN_PARTITIONS` hours, on hourly partitions as the sensors then continue them. With `hourly_only` the
whole range goes the live path's way (what this command did before history partitions: 720x Dagster's
bookkeeping per month). All runs are on the data folder's Dagster instance: the UI shows each with its window,
as it shows the sensors' runs. Nothing is split by hand, and no run is ever too large for Dagster's run
storage (a run of ~32 k hourly keys fails in sqlite before any step starts).

With the daemon up the landing sensor does the same by itself (month-long `hourly_job` runs, then the
pipeline sensor's); this command is for a desk that loads its history before starting it, or without it.
Each run's wall time is printed beside the time its steps took: the difference is Dagster's own cost per run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .core.config import ConfigError
from .core.units import DAY_MS, HOUR_MS
from .instance import EVENT_BATCH_ENV, PLANNED_EVENTS_ENV, dagster_env

DEFAULT_JOBS = ("hourly_job", "signals_job")


@dataclass(frozen=True)
class RunTiming:
    """One run of the backfill: its job and window, wall time, the time its steps took, and success."""

    job: str
    window: str
    hours: int
    wall_s: float
    steps_s: float
    ok: bool
    run_id: str

    @property
    def overhead_s(self) -> float:
        """Dagster's own time in the run: process-local set-up, event and run storage, partition bookkeeping."""
        return max(self.wall_s - self.steps_s, 0.0)

    def __str__(self) -> str:
        state = "" if self.ok else " FAILED"
        return (
            f"{self.job} {self.window}: {self.wall_s:.1f} s (steps {self.steps_s:.1f} s, "
            f"Dagster {self.overhead_s:.1f} s){state}"
        )


def landed_span(data_dir: Path) -> tuple[int, int] | None:
    """[first landed day's start, end of the newest landed hour) of the landing zone, or None when empty."""
    from .core.landing import newest_landed_hour_ms
    from .defs.partitions import first_landed_day

    first, newest = first_landed_day(data_dir), newest_landed_hour_ms(data_dir)
    if first is None or newest is None:
        return None
    return _day_ms(first), newest + HOUR_MS


def backfill(
    data_dir: Path,
    start: date | None = None,
    end: date | None = None,
    jobs: Sequence[str] = DEFAULT_JOBS,
    progress: Callable[[str], None] | None = print,
    hourly_only: bool = False,
) -> list[RunTiming]:
    """Materialize [start, end) of the landed history (default: all of it): the months holding its days before
    the newest landed day with `history_job` (runs of monthly partitions; whole months, so a `start` or `end`
    inside a month loads all of it), the rest with `jobs` (stage jobs, in the pipeline's order, month-long runs
    of hourly partitions); `hourly_only`: all of it with `jobs`. Returns every run's timing; stops at the first
    failed run (later windows read what it would have written)."""
    from .defs import history
    from .defs.jobs import STAGE_BY_JOB, STAGES

    data_dir = Path(data_dir).resolve()
    unknown = [job for job in jobs if job not in STAGE_BY_JOB or STAGE_BY_JOB[job].unit != "hour"]
    if unknown:
        hourly = [stage.job for stage in STAGES if stage.unit == "hour"]
        raise ConfigError(f"--jobs: {unknown[0]!r} is not an hourly stage job; expected some of {hourly}")
    span = landed_span(data_dir)
    if span is None:
        raise ConfigError(f"--data-dir: nothing landed under {data_dir / 'landing'}; import or capture first")
    lo = _day_ms(start) if start else span[0]
    hi = _day_ms(end) if end else span[1]
    if hi <= lo:
        raise ConfigError(f"--to: {end} is not after --from {start or _iso_day(lo)}")
    env = dagster_env(data_dir)
    for name in ("DAGSTER_HOME", "FUNDARB_DATA_DIR", PLANNED_EVENTS_ENV, EVENT_BATCH_ENV):
        os.environ[name] = env[name]
    from dagster import DagsterInstance

    from .definitions import build_definitions
    from .defs.partitions import MAX_RUN_PARTITIONS, month_runs, partitions_start, split_span

    partitions = partitions_start(data_dir)
    lo = max(lo, partitions.start_ms)
    defs = build_definitions(partitions)
    # history: the months holding the days before the newest landed day (that day stays hourly, as the live path
    # goes on; its month is history too, loaded as far as it has landed, and its newest day again by the hour)
    cut = lo if hourly_only else max(lo, min(hi, (span[1] - 1) // DAY_MS * DAY_MS) // DAY_MS * DAY_MS)
    pieces = month_runs((lo, cut), history.HISTORY_RUN_MONTHS) if cut > lo else []
    plan = [(history.HISTORY_JOB, "month", piece) for piece in pieces]
    if hi > cut:
        for stage in [stage for stage in STAGES if stage.job in jobs]:
            first = max(cut - stage.look_back_h * HOUR_MS, partitions.start_ms)
            plan += [(stage.job, "hour", piece) for piece in split_span((first, hi), MAX_RUN_PARTITIONS * HOUR_MS)]
    timings: list[RunTiming] = []
    with DagsterInstance.get() as instance:
        for job, unit, piece in plan:
            timing = _run(defs, instance, job, unit, piece)
            timings.append(timing)
            if progress:
                progress(str(timing))
            if not timing.ok:
                return timings
    if progress:
        wall, steps = sum(t.wall_s for t in timings), sum(t.steps_s for t in timings)
        progress(
            f"backfill: {len(timings)} runs over {_iso_day(lo)} .. {_iso_day(hi)} in {wall:.1f} s "
            f"(steps {steps:.1f} s, Dagster {wall - steps:.1f} s)"
        )
    return timings


def _run(defs: Any, instance: Any, job: str, unit: str, piece: tuple[int, int]) -> RunTiming:
    """One ranged run of `job` over `piece` (hours or days), timed."""
    from .defs.sensors import stage_request

    request = stage_request(job, piece, unit, "", {"fundarb/trigger": "fundarb backfill"})
    started = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
    )
    wall = time.perf_counter() - started
    steps_ms = sum(
        getattr(event.event_specific_data, "duration_ms", 0.0) or 0.0
        for event in result.all_events
        if event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")
    )
    hours = (piece[1] - piece[0]) // HOUR_MS
    return RunTiming(job, request.tags["fundarb/window"], hours, wall, steps_ms / 1000, result.success, result.run_id)


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) // DAY_MS * DAY_MS


def _iso_day(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"
