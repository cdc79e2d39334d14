"""Sensors: `landing_sensor` (complete hours of landed files -> `hourly_job`) and `pipeline_sensor` (each stage
after the stages it reads, see `jobs.STAGES`). Both are on by default; with the daemon up (`fundarb ui` runs
`dagster dev`), a landed file reaches `alerts` with nobody pressing a button.

landing_sensor: each tick lists the landing zone's hour folders changed since its cursor (a folder's mtime
moves when a file is renamed into it) and digests each changed hour's file set (names and sizes over every
stream). An hour is loaded once it is complete: a later hour has landed (it closed on the data's clock) or
its folders have been quiet for `QUIET_S` (the capture stopped). Contiguous complete hours are one ranged
`hourly_job` run, run key `landing:<first>...<last>:<digest>`: a file set loads once, a late file re-runs its
hour. A tick requests one such run, the earliest, and none past an hour still waiting to complete (runs one
tick requests could start together); while an `hourly_job` run is queued or running the sensor waits (the next
run carries what completed meanwhile), so hours load in order: bars carry the close of the hours before them.
Imported history (days whose every hour holds only an import's day files, before the newest landed day) loads
by the month with `history_job` instead (`defs/history.py`, as `fundarb backfill` does: the months holding
such days, up to `HISTORY_RUN_MONTHS` a run), one run at a time and in order: hours after such days wait for
them, and so do the other hours of their months (the newest day's, a capture's), which then load by hour.

pipeline_sensor: reads the successful runs of the stage jobs since its cursor (the event log's storage id),
adds their windows to the pending windows of the stages that follow them, and requests a stage's pending
windows as ranged runs of its job when none of its own runs nor of the stages it waits for is queued,
running or about to be requested. Its cursor also keeps the data's clock (the newest hour hourly_job loaded),
which says when a day has ended. A stage that needs landed streams (`Stage.needs_streams`: execution_job, the
trader's fills) gets only the hours from the first landed hour of those streams on.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ..core.schema import MARKET_STREAMS
from ..core.tables import STREAM_TABLES
from ..core.units import DAY_MS, HOUR_MS
from .common.landing import hour_folders
from .history import HISTORY_RUN_MONTHS, history_key
from .jobs import HISTORY_JOB, STAGE_BY_JOB, STAGES, Stage
from .partitions import (
    MAX_RUN_PARTITIONS,
    Partitions,
    Span,
    clip_spans,
    day_key,
    hour_key,
    key_ms,
    merge_spans,
    month_key,
    month_ms,
    month_starts,
    next_month_ms,
    split_span,
)
from .resources import DataDirResource

STREAMS = tuple(STREAM_TABLES)  # every landed stream: a raw run loads them all
LANDING_INTERVAL_S: Final = 15  # the daemon evaluates the landing sensor at most this often (a folder listing)
PIPELINE_INTERVAL_S: Final = 5  # and the pipeline sensor (a few run-storage queries): the daemon's loop period
QUIET_S: Final = 20.0  # an hour with no later data is complete once its folders are this old (capture stopped)
MTIME_SLACK_S: Final = 5.0  # rescan folders this close to the cursor: mtimes are coarse, digests dedupe
FORGET_AFTER_S: Final = 48 * 3600.0  # digests of folders untouched this long leave the cursor (it stays small)
MAX_RUN_HOURS: Final = MAX_RUN_PARTITIONS  # a backlog is cut into ranged runs of at most a month of hours
MAX_RUN_DAYS: Final = 366
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


# -- landing_sensor -------------------------------------------------------------------------------------
@dataclass
class LandingCursor:
    seen_mtime: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)  # hour key -> digest of its file set, loaded
    mtimes: dict[str, float] = field(default_factory=dict)  # hour key -> newest folder mtime
    waiting: list[str] = field(default_factory=list)  # hours seen but not complete yet: rescanned every tick
    before_start: str = ""  # the earliest hour left in the landing zone for being before the partitions' start

    @classmethod
    def parse(cls, raw: str | None) -> LandingCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            float(data.get("seen_mtime", 0.0)),
            dict(data.get("digests", {})),
            dict(data.get("mtimes", {})),
            list(data.get("waiting", [])),
            str(data.get("before_start", "")),
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "seen_mtime": self.seen_mtime,
                "digests": self.digests,
                "mtimes": self.mtimes,
                "waiting": sorted(self.waiting),
                "before_start": self.before_start,
            },
            sort_keys=True,
        )


@dataclass
class LandingTick:
    """What one evaluation decided: the runs, the next cursor, and what it left waiting (said in the log)."""

    requests: list[RunRequest]
    cursor: LandingCursor
    waiting: int = 0
    before_start: int = 0


def file_set_digest(folders: Iterable[Path]) -> str:
    """A digest of the Parquet files (stream, name, size) in an hour's folders: the run key's content part."""
    entries = []
    for folder in folders:
        stream = stream_of(folder)
        try:
            listing = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in listing:
            if entry.name.endswith(".parquet") and not entry.name.startswith("."):
                entries.append(f"{stream}/{entry.name}:{entry.stat().st_size}")
    return hashlib.sha1("\n".join(sorted(entries)).encode()).hexdigest()[:20]


def stream_of(folder: Path) -> str:
    """The stream of an hour folder (`<stream>/date=/hour=`) or of a day folder holding day files."""
    return folder.parent.name if folder.name.startswith("date=") else folder.parent.parent.name


Landed = tuple[int, Path, float]  # (hour start ms, folder, folder mtime): an item of `hour_folders`


def list_landed(data_dir: Path) -> list[Landed]:
    """Every landed hour folder (and day folder of day files, per hour) of every stream: one walk of the landing
    zone, shared by what one sensor tick or status call asks of it."""
    return list(hour_folders(data_dir, STREAMS))


def evaluate_landing(
    data_dir: Path,
    cursor: LandingCursor,
    bounds: Span,
    now_s: float | None = None,
    already_loaded: set[str] | None = None,
    history_days: bool = True,
    listing: Sequence[Landed] | None = None,
) -> LandingTick:
    """The sensor's logic, pure enough to test: changed, complete hours -> ranged `hourly_job` requests, and
    imported whole days -> a `history_job` run over their months (`imported_days`, `order_loads`;
    `history_days=False`: hourly).

    `bounds`: [first, end) of the hourly partitions (ms); hours outside wait in the landing zone.
    `already_loaded`: on the very first tick (no cursor), hours whose raw partitions were materialized
    before the sensor ran are recorded without a run (a warehouse filled by the CLI is not reloaded).
    `listing`: the landing zone's hour folders (`list_landed`) when the caller listed them already.
    """
    now_s = time.time() if now_s is None else now_s
    start_ms, end_ms = bounds
    # The partitions' start moved back to hours left waiting before it (a reload): look at everything again.
    rescan = bool(cursor.before_start) and key_ms(cursor.before_start) >= start_ms
    floor = 0.0 if rescan else cursor.seen_mtime - MTIME_SLACK_S
    folders: dict[int, list[Path]] = {}
    mtime: dict[int, float] = {}
    newest_mtime, clock = cursor.seen_mtime, 0
    market = set(MARKET_STREAMS)
    for hour_ms, folder, folder_mtime in list_landed(data_dir) if listing is None else listing:
        folders.setdefault(hour_ms, []).append(folder)
        mtime[hour_ms] = max(mtime.get(hour_ms, 0.0), folder_mtime)
        newest_mtime = max(newest_mtime, folder_mtime)
        if stream_of(folder) in market:
            clock = max(clock, hour_ms)
    changed = {h for h, m in mtime.items() if m >= floor} | {key_ms(k) for k in cursor.waiting if key_ms(k) in mtime}
    tick = LandingTick([], LandingCursor(newest_mtime, dict(cursor.digests), dict(cursor.mtimes)))
    tick.cursor.before_start = "" if rescan else cursor.before_start
    digests: dict[int, str] = {}  # hour -> digest of its file set: the complete hours not loaded yet
    for hour_ms in sorted(changed):
        key = hour_key(hour_ms)
        if hour_ms < start_ms:
            tick.before_start = tick.before_start + 1
            earliest = tick.cursor.before_start
            tick.cursor.before_start = key if not earliest or hour_ms < key_ms(earliest) else earliest
            continue
        complete = hour_ms < clock or now_s - mtime[hour_ms] >= QUIET_S
        if hour_ms >= end_ms or not complete:
            tick.cursor.waiting.append(key)
            continue
        digest = file_set_digest(folders[hour_ms])
        tick.cursor.mtimes[key] = mtime[hour_ms]
        if cursor.digests.get(key) == digest:
            continue
        if already_loaded is not None and key in already_loaded:
            tick.cursor.digests[key] = digest
            continue
        digests[hour_ms] = digest
    ready = sorted(digests)
    history = imported_days(ready, folders, clock) if history_days else []
    hourly, months, days, later = order_loads(ready, history)
    # One hourly_job run per tick, and none past an hour still waiting: hours load in order, and the runs one
    # tick requests can start together (the queue dequeues them in one pass, before the pool counts either).
    waiting_from = min((key_ms(k) for k in tick.cursor.waiting), default=None)
    spans = [
        c for span in merge_spans((h, h + HOUR_MS) for h in hourly) for c in split_span(span, MAX_RUN_HOURS * HOUR_MS)
    ]
    if spans and waiting_from is not None and spans[0][0] > waiting_from:
        spans = []
    cut = spans[0][1] if spans else min(hourly, default=0)
    later = sorted([h for h in hourly if h >= cut] + later)
    hourly = [h for h in hourly if h < cut]
    for hour_ms in later:  # after history still to load: they wait for it (hours load in order)
        tick.cursor.waiting.append(hour_key(hour_ms))
    for hour_ms in hourly + [h for day in days for h in range(day, day + DAY_MS, HOUR_MS)]:
        tick.cursor.digests[hour_key(hour_ms)] = digests[hour_ms]
    tick.waiting = len(tick.cursor.waiting)
    if hourly:
        tick.requests.append(_landing_request("hourly_job", spans[0], "hour", digests))
    if months:
        tick.requests.append(_landing_request(HISTORY_JOB, months, "month", digests))
    # Forget hours untouched for long; a late file changes the folder's mtime and brings it back.
    horizon = newest_mtime - FORGET_AFTER_S
    for key in [k for k, m in tick.cursor.mtimes.items() if m < horizon]:
        tick.cursor.mtimes.pop(key, None)
        tick.cursor.digests.pop(key, None)
    return tick


def imported_days(hours: Sequence[int], folders: Mapping[int, list[Path]], clock_ms: int) -> list[int]:
    """The days (start ms) among the `hours` ready to load that are imported history: all 24 hours ready,
    only day files in them (an import's `date=` folders; a capture writes `hour=` folders), and before the day
    of the newest landed hour `clock_ms` (the newest day stays hourly, as the live path goes on)."""
    ready = set(hours)
    out = []
    for day in sorted({h // DAY_MS * DAY_MS for h in hours}):
        if day >= clock_ms // DAY_MS * DAY_MS:
            continue
        day_hours = range(day, day + DAY_MS, HOUR_MS)
        if all(h in ready and all(f.name.startswith("date=") for f in folders[h]) for h in day_hours):
            out.append(day)
    return out


def order_loads(hours: Sequence[int], history: Sequence[int]) -> tuple[list[int], Span | None, list[int], list[int]]:
    """What loads now, in time order: (hours for hourly_job, the months of one history_job run, the history
    days it loads, hours that wait).

    Hours before the first history day's month load first and alone; else the first run of consecutive months
    holding history days (at most `HISTORY_RUN_MONTHS`), whose every landed hour the run reads (a month's
    window); the hours in them that are not history days (a capture's hours, the newest landed day) wait, and
    load by hour after it, as the live path goes on. Everything after waits for the next tick (the in-flight
    check orders them)."""
    if not history:
        return list(hours), None, [], []
    first = month_ms(history[0])
    before = [h for h in hours if h < first]
    if before:
        return before, None, [], [h for h in hours if h >= first]
    months = [first]
    for month in sorted({month_ms(day) for day in history}):
        if month == months[-1]:
            continue
        if month != next_month_ms(months[-1]) or len(months) == HISTORY_RUN_MONTHS:
            break
        months.append(month)
    end = next_month_ms(months[-1])
    days = [day for day in history if day < end]
    loaded = {h for day in days for h in range(day, day + DAY_MS, HOUR_MS)}
    return [], (first, end), days, [h for h in hours if h not in loaded]


def _landing_request(job: str, span: Span, unit: str, digests: Mapping[int, str]) -> RunRequest:
    """A run of `job` over `span`, keyed by its range and the digest of its hours' file sets (loaded once)."""
    hours = (h for h in range(span[0], span[1], HOUR_MS) if h in digests)
    content = hashlib.sha1("".join(digests[h] for h in hours).encode()).hexdigest()[:20]
    tags = {"fundarb/trigger": "landing_sensor", "fundarb/file_set": content}
    return stage_request(job, span, unit, f"landing:{_range_label(span, unit)}:{content}", tags)


def build_landing_sensor(partitions: Partitions, hourly_job: Any, history_job: Any) -> Any:
    @sensor(
        name="landing_sensor",
        jobs=[hourly_job, history_job],
        minimum_interval_seconds=LANDING_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Complete hours of landed files in landing/<stream>/date=/hour=/ -> one ranged hourly_job run "
        "of contiguous hours at a time, in order (run key: the range and a digest of its file sets). An hour is "
        f"complete when a later hour has landed or its folders have been quiet for {QUIET_S:g} s. Imported whole "
        f"days before the newest landed day: a history_job run of their months (up to {HISTORY_RUN_MONTHS}), one "
        "at a time.",
    )
    def landing_sensor(context: SensorEvaluationContext, data_dir: DataDirResource) -> SensorResult | SkipReason:
        cursor = LandingCursor.parse(context.cursor)
        if context.cursor and jobs_in_flight(context.instance, ["hourly_job", HISTORY_JOB]):
            # Hours load in order (bars carry earlier closes); the next run takes what completes meanwhile.
            return SkipReason("an hourly_job or history_job run is queued or running: complete hours wait for it")
        listing = list_landed(data_dir.path())  # one walk of the landing zone per tick
        already_loaded = None if context.cursor else loaded_hours(context.instance, data_dir.path(), listing)
        tick = evaluate_landing(
            data_dir.path(), cursor, hourly_bounds(partitions), already_loaded=already_loaded, listing=listing
        )
        if tick.before_start:
            context.log.warning(
                f"{tick.before_start} landed hours are before the partitions' start {partitions.start} "
                f"({partitions.origin}) and wait in the landing zone: set FUNDARB_PARTITIONS_START earlier or "
                "reload the code location (the start follows the first landed day)"
            )
        if tick.waiting:
            context.log.info(
                f"{tick.waiting} hours wait: not complete yet (no later hour, files younger than {QUIET_S:g} s) "
                "or after imported days still loading"
            )
        if not tick.requests and tick.cursor.dump() == cursor.dump():
            return SkipReason(f"no new complete hours under {data_dir.landing_root()}")
        return SensorResult(run_requests=tick.requests, cursor=tick.cursor.dump())

    return landing_sensor


def loaded_hours(instance: Any, data_dir: Path, listing: Sequence[Landed] | None = None) -> set[str]:
    """The hour keys whose landed files are in the warehouse: raw_trades' hourly partitions, and the landed
    hours of the months history_job loaded (`fundarb backfill`, imported days) whose folders have not changed
    since (a month is materialized while still partial: what lands in it later is not loaded yet). `listing`:
    as `evaluate_landing`'s."""
    loaded = set(instance.get_materialized_partitions(AssetKey("raw_trades")))
    months: dict[str, float] = {}  # month key -> when history/raw_trades was last materialized for it
    cursor = None
    while True:
        page = instance.fetch_materializations(history_key("raw_trades"), limit=1000, cursor=cursor)
        for record in page.records:  # newest first
            if record.partition_key:
                months.setdefault(record.partition_key, record.timestamp)
        if not page.has_more:
            break
        cursor = page.cursor
    if months:
        newest: dict[int, float] = {}
        for hour_ms, _, folder_mtime in list_landed(data_dir) if listing is None else listing:
            newest[hour_ms] = max(newest.get(hour_ms, 0.0), folder_mtime)
        loaded.update(hour_key(h) for h, m in newest.items() if m <= months.get(month_key(h), -1.0))
    return loaded


def hourly_bounds(partitions: Partitions) -> Span:
    """[first, end) of the hourly partitions now (the last one is the hour in progress, `end_offset=1`)."""
    last = partitions.hourly.get_last_partition_key()
    return partitions.start_ms, (key_ms(last) + HOUR_MS if last else partitions.start_ms)


# -- runs of a stage --------------------------------------------------------------------------------------
def _range_label(span: Span, unit: str) -> str:
    first, last, _ = unit_keys(span, unit)
    return first if first == last else f"{first}...{last}"


def unit_keys(span: Span, unit: str) -> tuple[str, str, int]:
    """The first and last partition keys of `span` in hours, days or months, and how many keys it spans."""
    if unit == "month":
        first, last = month_key(span[0]), month_key(span[1] - 1)
        n = sum(1 for _ in month_starts(span))
        return first, last, n
    step = HOUR_MS if unit == "hour" else DAY_MS
    key = hour_key if unit == "hour" else day_key
    return key(span[0]), key(span[1] - step), (span[1] - span[0]) // step


def stage_request(job: str, span: Span, unit: str, run_key: str, tags: dict[str, str]) -> RunRequest:
    """A run of a partitioned stage job over a window: one partition, or a range (Dagster's range tags)."""
    first, last, n = unit_keys(span, unit)
    window = f"{_iso(span[0])} .. {_iso(span[1])} ({n} {unit}{'s' if n > 1 else ''})"
    tags = {**tags, "fundarb/window": window}
    # a run request's config replaces the job's: the stage's own (e.g. risk of the live book) goes with it
    config = STAGE_BY_JOB[job].config if job in STAGE_BY_JOB else {}
    if first == last:
        return RunRequest(run_key=run_key, job_name=job, partition_key=first, tags=tags, run_config=config)
    return RunRequest(
        run_key=run_key, job_name=job, tags={**tags, RANGE_START_TAG: first, RANGE_END_TAG: last}, run_config=config
    )


def run_span(tags: dict[str, str]) -> Span | None:
    """The event-time window of a run from its partition tags (None: an unpartitioned run)."""
    first = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    last = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
    if not first or not last or not first[:1].isdigit():
        return None  # unpartitioned, or a static partition (a backtest's strategy): no event-time window
    step = HOUR_MS if len(last) > 10 else DAY_MS
    return key_ms(first), key_ms(last) + step


def _iso(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"


# -- pipeline_sensor ----------------------------------------------------------------------------------------
@dataclass
class PipelineCursor:
    event_id: int = 0  # storage id of the last run-success event read
    clock_ms: int = 0  # end of the newest hour hourly_job loaded: the data's clock
    pending: dict[str, list[Span]] = field(default_factory=dict)  # stage job -> windows not requested yet

    @classmethod
    def parse(cls, raw: str | None) -> PipelineCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        pending = {job: [(int(s), int(e)) for s, e in spans] for job, spans in data.get("pending", {}).items()}
        return cls(int(data.get("event_id", 0)), int(data.get("clock_ms", 0)), pending)

    def dump(self) -> str:
        pending = {job: [list(s) for s in spans] for job, spans in self.pending.items() if spans}
        return json.dumps({"event_id": self.event_id, "clock_ms": self.clock_ms, "pending": pending}, sort_keys=True)


@dataclass(frozen=True)
class Success:
    """A successful run of a stage job: its job, window (None: unpartitioned) and id."""

    job: str
    span: Span | None
    run_id: str


def follow_window(stage: Stage, span: Span | None) -> Span:
    """The window of `stage` a successful upstream run over `span` asks for."""
    if stage.unit is None or span is None:
        return (0, 1)  # an unpartitioned stage only needs to know that it is due
    start, end = span
    if stage.unit == "day":
        return (start // DAY_MS * DAY_MS, -(-end // DAY_MS) * DAY_MS)
    if stage.unit == "hour":
        return (start - stage.look_back_h * HOUR_MS, end)
    return (start, end)


def plan_stages(
    cursor: PipelineCursor,
    successes: Sequence[Success],
    last_event_id: int,
    in_flight: set[str],
    hour_bounds: Span,
    stages: Sequence[Stage] = STAGES,
    first_landed: Mapping[str, int] | None = None,
) -> tuple[list[RunRequest], PipelineCursor]:
    """The sensor's logic, pure: new successes -> pending windows -> runs of the stages free to start.

    Stages are visited in dependency order. A stage with ready windows starts when neither its own job nor
    any job it waits for is in flight, requested in this tick, or holding ready windows it could not start.
    `first_landed`: the first landed hour (ms) of the streams a stage needs (`Stage.needs_streams`); its
    windows before that hour are dropped (a late file re-runs hourly_job, which asks again).
    """
    first_landed = first_landed or {}
    pending = {job: list(spans) for job, spans in cursor.pending.items()}
    clock = cursor.clock_ms
    for success in successes:
        if success.job == "hourly_job" and success.span is not None:
            clock = max(clock, success.span[1])
        for stage in stages:
            if success.job in stage.after:
                pending.setdefault(stage.job, []).append(follow_window(stage, success.span))
    start_ms, end_ms = hour_bounds
    busy: set[str] = set()
    requests: list[RunRequest] = []
    for stage in stages:
        spans = merge_spans(pending.get(stage.job, [])) if stage.unit else pending.get(stage.job, [])[:1]
        if stage.unit is not None:
            spans = clip_spans(spans, start_ms // DAY_MS * DAY_MS if stage.unit == "day" else start_ms, end_ms)
        if stage.needs_streams:
            needed = [first_landed.get(stream) for stream in stage.needs_streams]
            spans = [] if None in needed else clip_spans(spans, max(n for n in needed if n is not None), 2**62)
        ready, later = spans, []
        if stage.complete_days:
            # A day is complete once an hour of a later day has loaded: the day of the clock's last hour is not.
            day_of_clock = (clock - HOUR_MS) // DAY_MS * DAY_MS if clock else 0
            ready, later = clip_spans(spans, 0, day_of_clock), clip_spans(spans, day_of_clock, 2**62)
        if not ready:
            pending[stage.job] = later
            continue
        blocked = stage.job in in_flight or any(job in in_flight or job in busy for job in stage.waits_for)
        busy.add(stage.job)
        if blocked:
            pending[stage.job] = spans
            continue
        pending[stage.job] = later
        requests.extend(_stage_requests(stage, ready, last_event_id))
    return requests, PipelineCursor(last_event_id, clock, {job: s for job, s in pending.items() if s})


def _stage_requests(stage: Stage, spans: Sequence[Span], event_id: int) -> list[RunRequest]:
    tags = {"fundarb/trigger": f"pipeline_sensor after {', '.join(stage.after)}"}
    if stage.unit is None:
        return [
            RunRequest(
                run_key=f"{stage.job}:{key or 'all'}:{event_id}",
                job_name=stage.job,
                partition_key=key,
                tags=tags,
                run_config=stage.config,
            )
            for key in (stage.partition_keys or (None,))
        ]
    step = HOUR_MS if stage.unit == "hour" else DAY_MS
    most = (MAX_RUN_HOURS if stage.unit == "hour" else MAX_RUN_DAYS) * step
    return [
        stage_request(stage.job, piece, stage.unit, f"{stage.job}:{_range_label(piece, stage.unit)}:{event_id}", tags)
        for span in spans
        for piece in split_span(span, most)
    ]


def read_successes(instance: Any, after_id: int, jobs: Sequence[str], limit: int = 500) -> tuple[list[Success], int]:
    """Successful runs of the stage jobs after the storage id `after_id` (oldest first), and the last id read."""
    result = instance.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(DagsterEventType.RUN_SUCCESS, after_storage_id=after_id, job_names=list(jobs)),
        limit=limit,
        ascending=True,
    )
    successes, last = [], after_id
    for record in result.records:
        last = max(last, record.storage_id)
        run = instance.get_run_by_id(record.event_log_entry.run_id)
        if run is not None:
            successes.append(Success(run.job_name, run_span(dict(run.tags)), run.run_id))
    return successes, last


def jobs_in_flight(instance: Any, jobs: Iterable[str]) -> set[str]:
    """The jobs with a run queued, starting, running or cancelling."""
    return {job for job in jobs if instance.get_run_records(RunsFilter(job_name=job, statuses=IN_FLIGHT), limit=1)}


def first_landed_hours(
    data_dir: Path, stages: Sequence[Stage] = STAGES, listing: Sequence[Landed] | None = None
) -> dict[str, int]:
    """The first landed hour (ms) of each stream some stage needs (a listing of its hour folders and of the day
    folders holding imported day files; `listing`: as `evaluate_landing`'s)."""
    streams = sorted({stream for stage in stages for stream in stage.needs_streams})
    first: dict[str, int] = {}
    for hour_ms, folder, _ in hour_folders(data_dir, streams) if listing is None else listing:
        stream = stream_of(folder)
        if stream in streams:
            first[stream] = min(first.get(stream, hour_ms), hour_ms)
    return first


def build_pipeline_sensor(partitions: Partitions, jobs: Sequence[Any]) -> Any:
    stage_jobs = [job for job in jobs if job.name in {stage.job for stage in STAGES}]

    @sensor(
        name="pipeline_sensor",
        jobs=stage_jobs,
        minimum_interval_seconds=PIPELINE_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Runs each stage of the pipeline after the stages it reads (jobs.STAGES): a successful run's "
        "window becomes the next stages' window; a stage starts when nothing it waits for is queued or running.",
    )
    def pipeline_sensor(context: SensorEvaluationContext, data_dir: DataDirResource) -> SensorResult | SkipReason:
        cursor = PipelineCursor.parse(context.cursor)
        names = [stage.job for stage in STAGES]
        successes, last_id = read_successes(context.instance, cursor.event_id, names)
        in_flight = jobs_in_flight(context.instance, names)
        first = first_landed_hours(data_dir.path())
        requests, next_cursor = plan_stages(
            cursor, successes, last_id, in_flight, hourly_bounds(partitions), first_landed=first
        )
        for request in requests:
            context.log.info(
                f"{request.job_name} {request.tags.get('fundarb/window', request.tags.get('fundarb/config'))}"
            )
        if context.cursor and not requests and next_cursor.dump() == cursor.dump():
            waiting = ", ".join(f"{job} ({len(spans)} windows)" for job, spans in cursor.pending.items()) or "nothing"
            return SkipReason(
                f"no stage to start; pending: {waiting}; in flight: {', '.join(sorted(in_flight)) or 'none'}"
            )
        return SensorResult(run_requests=requests, cursor=next_cursor.dump())

    return pipeline_sensor


def build_sensors(partitions: Partitions, jobs: Sequence[Any]) -> list[Any]:
    hourly_job = next(job for job in jobs if job.name == "hourly_job")
    history_job = next(job for job in jobs if job.name == HISTORY_JOB)
    return [build_landing_sensor(partitions, hourly_job, history_job), build_pipeline_sensor(partitions, jobs)]


# -- where the pipeline stands (the demo and the daemon test wait on it) --------------------------------------
@dataclass
class PipelineStatus:
    """What is left before every landed hour has gone through every stage it can reach."""

    sensors_ticked: bool  # both sensors have a cursor (the daemon evaluated them)
    unloaded_hours: int  # landed hours inside the partitions with no raw materialization yet
    in_flight: list[str]  # stage jobs with runs queued or running
    unread: bool  # stage successes the pipeline sensor has not read yet
    ready: list[str]  # stages holding windows they would start now

    @property
    def settled(self) -> bool:
        return self.sensors_ticked and not (self.unloaded_hours or self.in_flight or self.unread or self.ready)

    def __str__(self) -> str:
        if not self.sensors_ticked:
            return "waiting for the sensors' first ticks"
        parts = [f"{self.unloaded_hours} landed hours not loaded yet"] if self.unloaded_hours else []
        parts += [f"running: {', '.join(self.in_flight)}"] if self.in_flight else []
        parts += [f"ready: {', '.join(self.ready)}"] if self.ready else []
        parts += ["a finished run not read yet"] if self.unread else []
        return "; ".join(parts) or "settled"


def pipeline_status(instance: Any, data_dir: Path, partitions: Partitions) -> PipelineStatus:
    cursors = {state.instigator_name: state.instigator_data for state in instance.all_instigator_state()}
    landing, pipeline = cursors.get("landing_sensor"), cursors.get("pipeline_sensor")
    names = [stage.job for stage in STAGES]
    in_flight = sorted(jobs_in_flight(instance, [*names, HISTORY_JOB]))
    if landing is None or pipeline is None or not getattr(pipeline, "cursor", None):
        return PipelineStatus(False, 0, in_flight, False, [])
    bounds = hourly_bounds(partitions)
    listing = list_landed(data_dir)  # one walk of the landing zone for the three questions below
    landed = {hour_key(h) for h, _, _ in listing if bounds[0] <= h < bounds[1]}
    unloaded = len(landed - loaded_hours(instance, data_dir, listing))
    cursor = PipelineCursor.parse(pipeline.cursor)
    unread = bool(read_successes(instance, cursor.event_id, names, limit=1)[0])
    first_landed = first_landed_hours(data_dir, listing=listing)
    requests, _ = plan_stages(cursor, [], cursor.event_id, set(), bounds, first_landed=first_landed)
    return PipelineStatus(True, unloaded, in_flight, unread, sorted({r.job_name for r in requests}))
