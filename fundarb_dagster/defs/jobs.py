"""Jobs: `<scope>_job`, built from the loaded assets so every domain's hourly/daily assets are included.

A partitioned job runs one partition or, with a partition range (CLI `--partition-range A...B`, a
backfill), one ranged run: every asset declares `BackfillPolicy.single_run()` and handles the whole window.
"""

from collections.abc import Sequence
from typing import Any

from dagster import AssetsDefinition, AssetSelection, define_asset_job

from ..core.tables import LANDED_TABLES
from .partitions import DAILY, HOURLY

LANDED_HOURLY = tuple(LANDED_TABLES)  # every table loaded from the landing zone (raw, execution)


def keys_with_partitions(assets: Sequence[Any], partitions_def: Any) -> list[Any]:
    """Asset keys of every asset whose partitions definition equals `partitions_def`."""
    keys = []
    for item in assets:
        if isinstance(item, AssetsDefinition) and item.partitions_def == partitions_def:
            keys.extend(item.keys)
    return sorted(keys, key=lambda k: k.to_user_string())


def build_jobs(assets: Sequence[Any]) -> list[Any]:
    """`raw_job` (the landing sensor's target), `hourly_job` (every hourly asset of every domain, in
    dependency order), `daily_job` (every daily asset), `instruments_job`."""
    hourly = keys_with_partitions(assets, HOURLY)
    daily = keys_with_partitions(assets, DAILY)
    jobs = [
        define_asset_job(
            "raw_job",
            selection=AssetSelection.assets(*LANDED_HOURLY),
            partitions_def=HOURLY,
            description="Load one hour (or a range) of every landed stream into its table (raw, execution).",
        ),
        define_asset_job(
            "hourly_job",
            selection=AssetSelection.assets(*hourly),
            partitions_def=HOURLY,
            description="Every hourly-partitioned asset of every domain: raw -> bars -> indicators -> funding...",
        ),
        define_asset_job(
            "instruments_job",
            selection=AssetSelection.assets("instruments"),
            description="Reload the instrument registry (instruments.json) into the warehouse.",
        ),
    ]
    if daily:
        jobs.append(
            define_asset_job(
                "daily_job",
                selection=AssetSelection.assets(*daily),
                partitions_def=DAILY,
                description="Every daily-partitioned asset (ohlcv_1d, funding history...).",
            )
        )
    return jobs
