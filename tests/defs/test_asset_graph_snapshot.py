"""The asset graph as a committed snapshot: keys, dependencies, groups, partitions, checks, and the stage
jobs that materialize each asset by themselves.

A rename, a new dependency or a changed partitioning shows up as a reviewable diff of
`snapshots/asset_graph.json`. After an intended change, rewrite it with
`FUNDARB_UPDATE_SNAPSHOT=1 pytest tests/defs/test_asset_graph_snapshot.py` and commit the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _partitions(partitions_def: Any) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    described: dict[str, Any] = {"kind": type(partitions_def).__name__}
    for attr in ("start", "end_offset", "timezone", "fmt", "cron_schedule"):
        value = getattr(partitions_def, attr, None)
        if value is not None:
            described[attr] = value.isoformat() if hasattr(value, "isoformat") else value
    return described


def asset_graph_snapshot() -> dict[str, Any]:
    from fundarb_dagster.definitions import build_definitions
    from fundarb_dagster.defs.jobs import STAGES
    from fundarb_dagster.defs.partitions import TEMPLATE_PARTITIONS

    defs = build_definitions(TEMPLATE_PARTITIONS)  # the deployment's start is a setting, not part of the graph
    stages_of: dict[str, list[str]] = {}
    for stage in STAGES:
        for name in stage.assets:
            stages_of.setdefault(name, []).append(stage.job)

    graph = defs.resolve_asset_graph()
    checks: dict[str, list[dict[str, Any]]] = {}
    for check_key in graph.asset_check_keys:
        blocking = bool(graph.get_check_spec(check_key).blocking)
        checks.setdefault(check_key.asset_key.to_user_string(), []).append(
            {"name": check_key.name, "blocking": blocking}
        )
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "stages": stages_of.get(key.to_user_string(), []),
            "checks": sorted(checks.get(key.to_user_string(), []), key=lambda c: (c["name"], c["blocking"])),
        }
    return {
        "assets": assets,
        "jobs": sorted(job.name for job in defs.jobs or []),
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
        "schedules": sorted(schedule.name for schedule in defs.schedules or []),
    }


def test_asset_graph_matches_the_committed_snapshot():
    current = asset_graph_snapshot()
    if os.environ.get("FUNDARB_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    committed = json.loads(SNAPSHOT.read_text())
    assert current == committed, "asset graph changed: review the diff and rewrite the snapshot (see docstring)"
