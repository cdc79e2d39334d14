"""Imported history on monthly partitions: the hourly stage's assets again, under `history/<name>`, a month each.

Dagster writes one materialization event per asset and partition, and one evaluation per check and partition,
also inside a ranged run: a year of hourly history costs 8,760 events per asset before any work (minutes per
asset on sqlite), a year of days 365. The live path needs hourly partitions (an hour loads once it closes);
history does not. So the assets of `hourly_job` that read the landing zone and what follows from them (raw and
execution tables, bars, funding, and `funding_spreads` of `signals_job`), plus the 8h/1d bars, are declared a
second time with the same computation and the same SQL on monthly partitions, in the asset group `history`,
and `history_job` runs them: a month of history is one event per asset (and per check), in ranged runs of up
to `HISTORY_RUN_MONTHS` months (one SQL statement per asset per run).

Both copies write the same warehouse tables, each replacing its own event-time window, so the rows are the
same whichever loaded them (tests/test_backfill.py holds them equal); a month run before the month ahead of it
also reloads the hours before its window that its first hours read (`core/look_back.py`), so runs may go in
any order. A month still partial (the newest
landed month) is materialized anyway: whatever lands later in it is loaded by the hourly path, or the month is
run again; its rows are recomputed from the landing zone each time (idempotent). `history/funding_spreads`
also recomputes the 8 hours before its window (as `signals_job` does, `look_back_h`; `partition_window` widens
a monthly window by it): their spreads are paid by the settlements at the start of the window, which the run
of the month before could not see yet.
`fundarb backfill` cuts a range into the months up to the newest landed day (`history_job`) and the newest
day's hours (`hourly_job`, `signals_job`, as the live path), and so does the landing sensor for imported days
(`sensors.imported_days`): the UI shows history under `history/*`, the live hours under the tables' own names.
Their checks come along (not the freshness checks: history is old by nature).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from dagster import (
    AssetChecksDefinition,
    AssetDep,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
)

from .jobs import HISTORY_GROUP, HISTORY_JOB, STAGE_BY_JOB
from .partitions import DAILY, HOURLY, MONTHLY

__all__ = ["HISTORY_GROUP", "HISTORY_JOB", "history_assets", "history_checks", "history_key"]
# A history run covers at most this many months: one SQL statement per asset over all of them, so the run's
# memory grows with it (benchmarks/bench_history.py prints the peak); Dagster's cost per run is paid once.
HISTORY_RUN_MONTHS: Final = 12
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
    moved under `history/`, group `history`, hourly and daily partitions replaced by the monthly template
    (`definitions.py` then moves them onto the deployment's start, as every asset)."""
    copies = []
    for item in assets:
        if not isinstance(item, AssetsDefinition) or not any(key in REPLACEMENTS for key in item.keys):
            continue
        if not all(key in REPLACEMENTS for key in item.keys):
            raise ValueError(f"history: {sorted(k.to_user_string() for k in item.keys)} are only partly history")
        copy = item.with_attributes(
            asset_key_replacements=REPLACEMENTS, backfill_policy=BackfillPolicy.multi_run(HISTORY_RUN_MONTHS)
        )
        copies.append(
            copy.map_asset_specs(
                lambda spec: spec.replace_attributes(
                    group_name=HISTORY_GROUP,
                    partitions_def=_monthly(spec.partitions_def),
                    deps=[_monthly_dep(dep) for dep in spec.deps],
                    description=f"{spec.description} History copy: a month per partition (history_job).",
                )
            )
        )
    return copies


def history_checks(checks: Iterable[AssetChecksDefinition]) -> list[AssetChecksDefinition]:
    """The checks of the history copies: every check of a copied table but the freshness ones (wall clock),
    evaluated once per run (`_run_checks`)."""
    copies = []
    for item in checks:
        keys = list(item.check_keys)
        if keys and all(k.asset_key in REPLACEMENTS and not k.name.endswith("_is_fresh") for k in keys):
            copies.append(_run_checks(item.with_attributes(asset_key_replacements=REPLACEMENTS)))
    return copies


def _monthly(partitions_def: PartitionsDefinition | None) -> PartitionsDefinition | None:
    return MONTHLY if partitions_def in (HOURLY, DAILY) else partitions_def


def _monthly_dep(dep: AssetDep) -> AssetDep:
    """A dependency on a window of hours beyond the partition's (funding_spreads reads the settlements up to
    8 h after it) becomes one on the month before and the month itself: a history month's run recomputes the
    hours before it that the settlements at its start pay for (see the module's docstring)."""
    mapping = dep.partition_mapping
    if isinstance(mapping, TimeWindowPartitionMapping) and (mapping.start_offset, mapping.end_offset) != (0, 0):
        monthly = TimeWindowPartitionMapping(start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True)
        return AssetDep(dep.asset_key, partition_mapping=monthly)
    return dep


def _run_checks(item: AssetChecksDefinition) -> AssetChecksDefinition:
    """A history copy's check is evaluated once per run over the run's window (months of it), not once per
    partition: a check's query covers the run's window either way, and a 12-month run would record 12
    evaluations of each check (~1,000 events a 4-year history). The UI shows its latest evaluation, with the
    window in its metadata (`common.checks.evaluations_per_partition`). No public way to replace a check spec's
    partitions in Dagster 1.13: the definition is rebuilt with the replaced specs, as `partitions._moved`."""
    specs = item._check_specs_by_output_name  # noqa: SLF001 - see above
    replaced = {name: spec._replace(partitions_def=None) for name, spec in specs.items()}
    return item.__class__.dagster_internal_init(
        **{**item.get_attributes_dict(), "check_specs_by_output_name": replaced}
    )
