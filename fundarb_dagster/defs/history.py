"""Imported history on daily partitions: the hourly stage's assets again, under `history/<name>`, a day each.

Dagster writes one materialization event per asset and partition, also inside a ranged run: a year of hourly
history costs 8,760 events per asset before any work (minutes per asset on sqlite), four years four times as
much. The live path needs hourly partitions (an hour loads once it closes); history does not. So the assets of
`hourly_job` that read the landing zone and what follows from them (raw and execution tables, bars, funding,
and `funding_spreads` of `signals_job`), plus the 8h/1d bars, are declared a second time with the same
computation and the same SQL on daily partitions, in the asset group `history`, and `history_job` runs them.
A day of history is then one event per asset instead of 24, in month-long ranged runs (`HISTORY_RUN_DAYS`).

Both copies write the same warehouse tables, each replacing its own event-time window, so the rows are the
same whichever loaded them (tests/test_backfill.py holds them equal). `fundarb backfill` cuts a range into
the whole days before the newest landed day (`history_job`) and the newest day's hours (`hourly_job`,
`signals_job`, as the live path), and so does the landing sensor for imported days (`sensors.imported_days`):
the UI shows history under `history/*`, the live hours under the tables' own names. Their checks come along
(not the freshness checks: history is old by nature).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from dagster import AssetChecksDefinition, AssetKey, AssetsDefinition, BackfillPolicy

from .jobs import HISTORY_GROUP, HISTORY_JOB, STAGE_BY_JOB
from .partitions import DAILY, HOURLY

__all__ = ["HISTORY_GROUP", "HISTORY_JOB", "history_assets", "history_checks", "history_key"]
# A history run covers at most a month of days: the same SQL windows as a month-long hourly run, so the same
# memory; only Dagster's bookkeeping shrinks (24x fewer partitions).
HISTORY_RUN_DAYS: Final = 31
# hourly_job's event-time assets (not the registry or the venues' current leverage tiers, which are not history),
# the spreads that follow them, and the 8h/1d bars (daily already; copied so they follow history/ohlcv_1h)
HISTORY_TABLES: Final = (
    *(name for name in STAGE_BY_JOB["hourly_job"].assets if name not in ("instruments", "leverage_tiers")),
    "funding_spreads",
    "ohlcv_8h",
    "ohlcv_1d",
)


def history_key(name: str) -> AssetKey:
    """The asset key of a table's history copy (`history/raw_funding`)."""
    return AssetKey([HISTORY_GROUP, name])


REPLACEMENTS: Final = {AssetKey(name): history_key(name) for name in HISTORY_TABLES}


def history_assets(assets: Iterable[AssetsDefinition]) -> list[AssetsDefinition]:
    """The history copies of the assets whose keys are in `HISTORY_TABLES`: same computation, keys and deps
    moved under `history/`, group `history`, hourly partitions replaced by the daily template (`definitions.py`
    then moves them onto the deployment's start, as every asset)."""
    copies = []
    for item in assets:
        if not isinstance(item, AssetsDefinition) or not any(key in REPLACEMENTS for key in item.keys):
            continue
        if not all(key in REPLACEMENTS for key in item.keys):
            raise ValueError(f"history: {sorted(k.to_user_string() for k in item.keys)} are only partly history")
        copy = item.with_attributes(
            asset_key_replacements=REPLACEMENTS, backfill_policy=BackfillPolicy.multi_run(HISTORY_RUN_DAYS)
        )
        copies.append(
            copy.map_asset_specs(
                lambda spec: spec.replace_attributes(
                    group_name=HISTORY_GROUP,
                    partitions_def=DAILY if spec.partitions_def == HOURLY else spec.partitions_def,
                    description=f"{spec.description} History copy: a day per partition (history_job).",
                )
            )
        )
    return copies


def history_checks(checks: Iterable[AssetChecksDefinition]) -> list[AssetChecksDefinition]:
    """The checks of the history copies: every check of a copied table but the freshness ones (wall clock)."""
    copies = []
    for item in checks:
        keys = list(item.check_keys)
        if keys and all(k.asset_key in REPLACEMENTS and not k.name.endswith("_is_fresh") for k in keys):
            copies.append(_daily_checks(item.with_attributes(asset_key_replacements=REPLACEMENTS)))
    return copies


def _daily_checks(item: AssetChecksDefinition) -> AssetChecksDefinition:
    """A partitioned check follows its asset onto daily partitions (no public way to replace a check spec's
    partitions in Dagster 1.13: the definition is rebuilt with the replaced specs, as `partitions._moved`)."""
    specs = item._check_specs_by_output_name  # noqa: SLF001 - see above
    replaced = {
        name: spec._replace(partitions_def=DAILY) if spec.partitions_def == HOURLY else spec
        for name, spec in specs.items()
    }
    return item.__class__.dagster_internal_init(
        **{**item.get_attributes_dict(), "check_specs_by_output_name": replaced}
    )
