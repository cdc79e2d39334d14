"""Sensors: `landing_sensor` (new landed files -> raw runs), the automation sensor (downstream follows),
the freshness-check sensor.

landing_sensor: each tick lists the landing zone's hour folders changed since its cursor (a folder's
mtime moves when a file is renamed into it), digests each changed hour's file set (names and sizes over
every stream) and requests one run of that hour's raw partitions per new digest. The run key is
`landing:<partition>:<digest>`, so a file set is loaded exactly once, and a late file (a new digest)
re-runs its hour. Downstream hourly assets (bars, indicators, funding...) follow through their
`FOLLOW_UPSTREAM` automation condition, evaluated by `automation_sensor`.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_sensor_for_freshness_checks,
    sensor,
)

from ..core import landing
from ..core.tables import STREAM_TABLES
from .jobs import LANDED_HOURLY
from .resources import DataDirResource

STREAMS = tuple(STREAM_TABLES)  # every landed stream: a raw run loads them all
MTIME_SLACK_S = 5.0  # rescan folders this close to the cursor: mtimes are coarse, digests dedupe
FORGET_AFTER_S = 48 * 3600.0  # digests of folders untouched this long leave the cursor (it stays small)
MAX_RUNS_PER_TICK = 48


@dataclass
class LandingCursor:
    seen_mtime: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)  # partition key -> digest of its file set
    mtimes: dict[str, float] = field(default_factory=dict)  # partition key -> newest folder mtime

    @classmethod
    def parse(cls, raw: str | None) -> "LandingCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(float(data.get("seen_mtime", 0.0)), dict(data.get("digests", {})), dict(data.get("mtimes", {})))

    def dump(self) -> str:
        return json.dumps(
            {"seen_mtime": self.seen_mtime, "digests": self.digests, "mtimes": self.mtimes}, sort_keys=True
        )


def hour_folders(data_dir: Path) -> Iterable[tuple[str, Path, float]]:
    """(partition key, folder, mtime) of every stream's hour folder in the landing zone."""
    root = landing.landing_root(data_dir)
    for stream in STREAMS:
        base = root / stream
        if not base.is_dir():
            continue
        for day in base.glob("date=*"):
            for hour in day.glob("hour=*"):
                try:
                    mtime = hour.stat().st_mtime
                except FileNotFoundError:
                    continue
                key = f"{day.name[5:]}-{hour.name[5:]}:00"
                yield key, hour, mtime


def file_set_digest(folders: Iterable[Path]) -> str:
    """A digest of the Parquet files (stream, name, size) in an hour's folders: the run key's content part."""
    entries = []
    for folder in folders:
        stream = folder.parent.parent.name
        for entry in os.scandir(folder):
            if entry.name.endswith(".parquet") and not entry.name.startswith("."):
                entries.append(f"{stream}/{entry.name}:{entry.stat().st_size}")
    return hashlib.sha1("\n".join(sorted(entries)).encode()).hexdigest()[:20]


def evaluate_landing(
    data_dir: Path, cursor: LandingCursor, already_loaded: set[str] | None = None
) -> tuple[list[RunRequest], LandingCursor]:
    """The sensor's logic, pure enough to test: changed hours -> run requests, and the next cursor.

    `already_loaded`: on the very first tick (no cursor), hours whose raw partitions were materialized
    before the sensor ran are recorded without a run (a warehouse filled by the CLI is not reloaded).
    """
    changed: dict[str, list[Path]] = {}
    newest = cursor.seen_mtime
    folder_mtime: dict[str, float] = {}
    for key, _folder, mtime in hour_folders(data_dir):
        newest = max(newest, mtime)
        folder_mtime[key] = max(folder_mtime.get(key, 0.0), mtime)
        if mtime >= cursor.seen_mtime - MTIME_SLACK_S:
            changed.setdefault(key, [])
    # Digest over every stream's folder of a changed hour (the run loads all of them).
    root = landing.landing_root(data_dir)
    requests: list[RunRequest] = []
    next_cursor = LandingCursor(newest, dict(cursor.digests), dict(cursor.mtimes))
    for key in sorted(changed):
        if len(requests) >= MAX_RUNS_PER_TICK:
            next_cursor.seen_mtime = min(next_cursor.seen_mtime, folder_mtime[key] - MTIME_SLACK_S - 1)
            continue
        date, hour = key[:10], key[11:13]
        folders = [root / s / f"date={date}" / f"hour={hour}" for s in STREAMS]
        digest = file_set_digest(f for f in folders if f.is_dir())
        next_cursor.mtimes[key] = folder_mtime[key]
        if cursor.digests.get(key) == digest:
            continue
        next_cursor.digests[key] = digest
        if already_loaded is not None and key in already_loaded:
            continue
        requests.append(
            RunRequest(
                run_key=f"landing:{key}:{digest}",
                partition_key=key,
                asset_selection=[AssetKey(name) for name in LANDED_HOURLY],
                tags={"fundarb/trigger": "landing", "fundarb/file_set": digest},
            )
        )
    # Forget hours untouched for long; a late file changes the folder's mtime and brings it back.
    horizon = newest - FORGET_AFTER_S
    for key in [k for k, m in next_cursor.mtimes.items() if m < horizon]:
        next_cursor.mtimes.pop(key, None)
        next_cursor.digests.pop(key, None)
    return requests, next_cursor


@sensor(
    name="landing_sensor",
    target=AssetSelection.assets(*LANDED_HOURLY),
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="New or late files in landing/<stream>/date=/hour=/ -> one run of that hour's raw partitions "
    "per file set (run key: partition + digest of the file set).",
)
def landing_sensor(context: SensorEvaluationContext, data_dir: DataDirResource) -> SensorResult | SkipReason:
    cursor = LandingCursor.parse(context.cursor)
    already_loaded = None
    if not context.cursor:
        already_loaded = set(context.instance.get_materialized_partitions(AssetKey("raw_trades")))
    requests, next_cursor = evaluate_landing(data_dir.path(), cursor, already_loaded)
    if not requests and next_cursor.dump() == cursor.dump():
        return SkipReason(f"no new landed files under {landing.landing_root(data_dir.path())}")
    return SensorResult(run_requests=requests, cursor=next_cursor.dump())


automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions: downstream hourly tables follow their parents.",
)


def build_sensors(freshness_checks: list[Any]) -> list[Any]:
    sensors = [landing_sensor, automation_sensor]
    if freshness_checks:
        sensors.append(
            build_sensor_for_freshness_checks(
                freshness_checks=freshness_checks,
                name="freshness_checks_sensor",
                default_status=DefaultSensorStatus.RUNNING,
            )
        )
    return sensors
