"""Event-time partitions shared by every domain, where they start, and the window helpers assets and
sensors use.

Every partitioned table is keyed by event time (UTC): an hourly partition holds the rows whose `ts` falls in
that hour, whatever the time they arrived. The assets are declared on the templates `HOURLY` / `DAILY`
(imported history's copies on `MONTHLY`, `defs/history.py`); when the code location loads, `definitions.py`
moves them onto the deployment's `Partitions` (same granularity, a start chosen by `partitions_start`), so
the UI lists only hours that can hold data instead of years of "missing" partitions. Ranged runs span many
keys in one run, at most `MAX_RUN_PARTITIONS` (a month of hours): a backfill of years from the UI is cut into
bounded runs by Dagster (`BOUNDED_RUNS`), by the sensors and by `fundarb backfill` alike. A run of ~32 k
hourly keys or more fails inside Dagster's sqlite run storage ("too many SQL variables") before any step
starts, and each partition costs bookkeeping per asset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from dagster import (
    AssetsDefinition,
    BackfillPolicy,
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
)

from ..core.config import ConfigError
from ..core.landing import landing_root, newest_landed_hour_ms
from ..core.look_back import history_look_back_h
from ..core.units import DAY_MS, HOUR_MS
from ..core.window import Window, window_from_ms

# The one setting of the partitions' start (ISO date, UTC). Unset: the first day in the landing zone, else
# today. Read when the code location loads (`definitions.py`), never at import.
PARTITIONS_START_ENV: Final = "FUNDARB_PARTITIONS_START"

# The templates the assets are declared on: early enough for every recorded fixture (2019), so tests that
# materialize module-level assets need no setting. The loaded code location never shows this start.
TEMPLATE_START: Final = "2019-01-01"
HOURLY = HourlyPartitionsDefinition(start_date=f"{TEMPLATE_START}-00:00", end_offset=1, timezone="UTC")
DAILY = DailyPartitionsDefinition(start_date=TEMPLATE_START, end_offset=1, timezone="UTC")
# Imported history's copies of the hourly stage (`defs/history.py`): a month per partition.
MONTHLY = MonthlyPartitionsDefinition(start_date=TEMPLATE_START, end_offset=1, timezone="UTC")

# A run covers at most a month of hours (or that many days): one SQL statement per asset per month of history,
# never a run too large for the run storage.
MAX_RUN_PARTITIONS: Final = 31 * 24
BOUNDED_RUNS = BackfillPolicy.multi_run(max_partitions_per_run=MAX_RUN_PARTITIONS)


@dataclass(frozen=True)
class Partitions:
    """The deployment's hourly, daily and monthly partitions: they start at `start` (00:00 UTC; the monthly
    ones on the first of its month, the month holding it) and include the hour (day, month) in progress
    (`end_offset=1`), so a live capture's current hour can load before it closes."""

    start: date
    origin: str  # where the start came from, said in the UI and the logs

    @property
    def hourly(self) -> HourlyPartitionsDefinition:
        return HourlyPartitionsDefinition(start_date=f"{self.start:%Y-%m-%d}-00:00", end_offset=1, timezone="UTC")

    @property
    def daily(self) -> DailyPartitionsDefinition:
        return DailyPartitionsDefinition(start_date=f"{self.start:%Y-%m-%d}", end_offset=1, timezone="UTC")

    @property
    def monthly(self) -> MonthlyPartitionsDefinition:
        return MonthlyPartitionsDefinition(start_date=f"{self.start:%Y-%m}-01", end_offset=1, timezone="UTC")

    @property
    def start_ms(self) -> int:
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp() * 1000)

    def of(self, template: PartitionsDefinition | None) -> PartitionsDefinition | None:
        """The deployment's partitions definition standing for a template (None stays None; a static one, such
        as the backtests' strategies, has no start and stays itself)."""
        if template is None or isinstance(template, StaticPartitionsDefinition):
            return template
        if template == HOURLY:
            return self.hourly
        if template == DAILY:
            return self.daily
        if template == MONTHLY:
            return self.monthly
        raise ValueError(f"partitions_def: {template} is not the HOURLY, DAILY or MONTHLY template")


# The deployment partitions equal to the templates: what tests load the code location on.
TEMPLATE_PARTITIONS = Partitions(date.fromisoformat(TEMPLATE_START), "the templates' start")


def partitions_start(data_dir: Path, environ: Mapping[str, str] | None = None) -> Partitions:
    """The partitions' start: `FUNDARB_PARTITIONS_START` (YYYY-MM-DD) if set, else the first day that has
    files in the landing zone, else today (UTC): a new deployment starts where its capture starts.

    History landed before the start later (an import, `fundarb history`) waits in the landing zone until
    the code location reloads (the start then moves to it) or the setting is moved back."""
    environ = os.environ if environ is None else environ
    value = (environ.get(PARTITIONS_START_ENV) or "").strip()
    if value:
        try:
            return Partitions(date.fromisoformat(value), PARTITIONS_START_ENV)
        except ValueError:
            raise ConfigError(f"{PARTITIONS_START_ENV}: {value!r} is not a date (YYYY-MM-DD)") from None
    first = first_landed_day(data_dir)
    if first is not None:
        return Partitions(first, f"first landed day under {landing_root(data_dir)}")
    return Partitions(datetime.now(UTC).date(), "today (nothing landed yet)")


def first_landed_day(data_dir: Path) -> date | None:
    """The earliest `date=` folder of any stream in the landing zone (a listing of folder names, no reads)."""
    days = []
    root = landing_root(data_dir)
    if root.is_dir():
        for folder in root.glob("*/date=*"):
            try:
                days.append(date.fromisoformat(folder.name[5:]))
            except ValueError:
                continue
    return min(days) if days else None


def on_partitions(definitions: Iterable[AssetsDefinition], partitions: Partitions) -> list[AssetsDefinition]:
    """Assets and asset checks declared on the templates, moved onto the deployment's partitions."""
    return [_moved(item, partitions) for item in definitions]


def _moved(item: AssetsDefinition, partitions: Partitions) -> AssetsDefinition:
    if item.keys:  # an asset (or several): its specs carry the partitions
        if item.partitions_def is None:
            return item
        return item.map_asset_specs(
            lambda spec: spec.replace_attributes(partitions_def=partitions.of(spec.partitions_def))
        )
    # Checks only: a partitioned check must share its asset's partitions. Dagster has no public way to
    # replace a check spec's partitions (1.13), so the definition is rebuilt with the replaced specs.
    specs = item._check_specs_by_output_name  # noqa: SLF001 - see above
    if all(spec.partitions_def is None for spec in specs.values()):
        return item
    replaced = {name: spec._replace(partitions_def=partitions.of(spec.partitions_def)) for name, spec in specs.items()}
    return item.__class__.dagster_internal_init(
        **{**item.get_attributes_dict(), "check_specs_by_output_name": replaced}
    )


def partition_window(context: Any, look_back_h: int = 0) -> Window:
    """The run's event-time window: one partition or a whole range (`partition_time_window` spans it). On
    monthly partitions (imported history) only the landed part of the months: from the partitions' start to
    the end of the newest landed hour, the hours the hourly path could load (a month still partial is not
    filled beyond its data; the month holding the start begins before it), and `look_back_h` hours before
    that (never before the start): what an asset recomputes because the run before could not see its inputs
    yet (the hourly path's runs start that much earlier instead, `Stage.look_back_h`), or what the first hours
    of its window read, loaded by this run since the run of the month before may not have gone yet
    (`core/look_back.py`). The landed bounds are those of the step's `data_dir` resource (`run_data_dir`)."""
    time_window = context.partition_time_window
    start_ms, end_ms = int(time_window.start.timestamp() * 1000), int(time_window.end.timestamp() * 1000)
    if is_history_run(context):
        first, end = run_landed_bounds(context.run.run_id, run_data_dir(context))
        start_ms = max(start_ms, first)
        end_ms = max(min(end_ms, end), start_ms + HOUR_MS)
        start_ms = max(start_ms - look_back_h * HOUR_MS, first)
    return window_from_ms(start_ms, end_ms)


def history_reload_h(context: Any, table: str) -> int:
    """Hours before a history run's window that `table` reloads (`core/look_back.py`): its look-back when this
    asset's month before the window is not materialized yet (a UI backfill's runs go in any order, and this one
    went first), none when it is (the warehouse holds what the first hours read: the sensor's and `fundarb
    backfill`'s runs go in time order, and a month run again, as a daily import does, never pays it)."""
    hours = history_look_back_h(table)
    if not hours or not is_history_run(context):
        return 0
    start = context.partition_time_window.start
    month_before = (start.replace(day=1) - timedelta(days=1)).replace(day=1)
    key = month_before.strftime(run_partitions_def(context).fmt)
    return 0 if key in context.instance.get_materialized_partitions(context.asset_key) else hours


def run_data_dir(context: Any) -> Path:
    """The data folder of the `data_dir` resource the step is given (`DataDirResource`: the folder the assets load
    from). Every history step and check takes it, since its window is clamped to what landed there; a step without
    it is refused by name rather than read from another folder."""
    data_dir = getattr(context.resources, "data_dir", None)
    if data_dir is None:
        raise ValueError(
            f"{context.get_step_execution_context().step.key}: a step on monthly partitions needs the data_dir "
            "resource (its window is clamped to the data landed there)"
        )
    return Path(data_dir.path())


def is_history_run(context: Any) -> bool:
    """Whether the run is on monthly partitions (imported history, `defs/history.py`): its steps load the hours
    before their window that their first hours read (`core/look_back.py`) instead of reading them from earlier
    runs, since its runs may go in any order."""
    return isinstance(run_partitions_def(context), MonthlyPartitionsDefinition)


def run_partitions_def(context: Any) -> PartitionsDefinition | None:
    """The partitions definition the run's keys belong to (what `partition_time_window` reads them with). An
    asset check's context has no `assets_def` of the asset it checks, and imported history's checks have no
    partitions of their own (`history._run_checks`): the run's partitions decide for assets and checks alike."""
    return context.get_step_execution_context().run_partitions_def


# landed_bounds of each recent run: listed once per run (every step and check of a history run clamps its window
# with it, and all of them then agree even if more lands meanwhile); in-process, so per process under the
# multiprocess executor.
_RUN_BOUNDS: dict[tuple[str, Path], Span] = {}
_RUN_BOUNDS_KEPT: Final = 64


def run_landed_bounds(run_id: str, data_dir: Path) -> Span:
    """`landed_bounds` of `data_dir` as the run `run_id` first saw them."""
    key = (run_id, Path(data_dir))
    if key not in _RUN_BOUNDS:
        if len(_RUN_BOUNDS) >= _RUN_BOUNDS_KEPT:
            _RUN_BOUNDS.clear()
        _RUN_BOUNDS[key] = landed_bounds(key[1])
    return _RUN_BOUNDS[key]


def landed_bounds(data_dir: Path) -> Span:
    """[the partitions' start, the end of the newest landed hour) of the data folder."""
    newest = newest_landed_hour_ms(data_dir)
    start = partitions_start(data_dir).start_ms
    return start, (newest + HOUR_MS if newest is not None else start)


# -- spans: the sensors' window algebra on epoch ms ---------------------------------------------------
Span = tuple[int, int]  # [start_ms, end_ms), aligned to hours (or days)


def hour_key(ms: int) -> str:
    """The hourly partition key of the hour holding `ms` (`2026-11-01-13:00`)."""
    return f"{_utc(ms // HOUR_MS * HOUR_MS):%Y-%m-%d-%H:00}"


def day_key(ms: int) -> str:
    """The daily partition key of the day holding `ms` (`2026-11-01`)."""
    return f"{_utc(ms // DAY_MS * DAY_MS):%Y-%m-%d}"


def month_key(ms: int) -> str:
    """The monthly partition key of the month holding `ms` (`2026-11-01`)."""
    return f"{_utc(ms):%Y-%m}-01"


def month_ms(ms: int) -> int:
    """The start (epoch ms) of the month holding `ms`."""
    return key_ms(month_key(ms))


def next_month_ms(ms: int) -> int:
    """The start (epoch ms) of the month after the one holding `ms`."""
    t = _utc(ms)
    return key_ms(f"{t.year + (t.month == 12)}-{t.month % 12 + 1:02d}-01")


def month_starts(span: Span) -> list[int]:
    """The starts (epoch ms) of the months holding some of `span`."""
    starts, t = [], month_ms(span[0])
    while t < span[1]:
        starts.append(t)
        t = next_month_ms(t)
    return starts


def month_runs(span: Span, months: int) -> list[Span]:
    """The whole months holding `span`, cut into consecutive runs of at most `months` months."""
    starts = month_starts(span)
    return [(starts[i], next_month_ms(starts[min(i + months, len(starts)) - 1])) for i in range(0, len(starts), months)]


def key_ms(key: str) -> int:
    """The start (epoch ms) of an hourly (`2026-11-01-13:00`), daily or monthly (`2026-11-01`) partition key."""
    fmt = "%Y-%m-%d-%H:%M" if len(key) > 10 else "%Y-%m-%d"
    return int(datetime.strptime(key, fmt).replace(tzinfo=UTC).timestamp() * 1000)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """The union of spans as sorted, disjoint spans (touching spans join)."""
    merged: list[list[int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def split_span(span: Span, max_ms: int) -> list[Span]:
    """A span cut into consecutive pieces of at most `max_ms` (bounded runs over a long backlog)."""
    start, end = span
    return [(s, min(s + max_ms, end)) for s in range(start, end, max_ms)]


def clip_spans(spans: Sequence[Span], lo: int, hi: int) -> list[Span]:
    """Spans cut to [lo, hi); empty pieces dropped."""
    return [(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
