"""What a ranged run of hourly history costs in Dagster's own bookkeeping, apart from any work: a month of
hourly partitions of trivial assets materialized in one run, on the means Dagster itself offers (its sqlite
storage, its consolidated sqlite storage, batched event writes, an in-memory instance), beside the same month
as daily partitions (what coarser partitions for imported history would cost), and on Postgres storage when
DAGSTER_PG_URL names a database.

Each asset only returns: the wall time is Dagster's (one materialization event per asset and partition, the
steps' events, the planned events: one per asset, as fundarb's instance sets
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS). Sizes and event counts printed.

    python -m benchmarks.bench_dagster_events              # 744 hourly keys (a month) x 2 assets, 31 daily keys
    python -m benchmarks.bench_dagster_events --quick      # 48 hourly keys x 2 assets
    python -m benchmarks.bench_dagster_events --assets 8   # more assets per run
    DAGSTER_PG_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/bench python -m benchmarks.bench_dagster_events
                                                           # also on fundarb's Postgres storage (issue #18)
    python -m benchmarks.bench_dagster_events --years 1    # a year of history as `fundarb backfill` cuts it:
                                                           # month-long runs of hourly keys, or of daily keys
    python -m benchmarks.bench_dagster_events --years 4 --unit day   # four years, daily keys only
"""

import argparse
import os
import tempfile
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dagster import MaterializeResult

from fundarb_dagster.instance import PG_URL_ENV, POSTGRES_STORAGE

warnings.filterwarnings("ignore")

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
CONSOLIDATED = """
event_log_storage:
  module: dagster._core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config:
    base_dir: {base}
"""
START = datetime(2024, 1, 1)


def chain(partitions_def: Any, n_assets: int) -> list[Any]:
    """`n_assets` trivial assets on `partitions_def`, each depending on the one before (one run, one step each)."""
    from dagster import BackfillPolicy, asset

    out: list[Any] = []
    for i in range(n_assets):

        @asset(
            name=f"a{i}",
            partitions_def=partitions_def,
            deps=out[-1:],
            backfill_policy=BackfillPolicy.single_run(),
        )
        def _noop():  # noqa: ANN202 - Dagster resolves a local function's annotations by name
            return MaterializeResult(metadata={"rows": 0})

        out.append(_noop)
    return out


def one_run(instance: Any, partitions_def: Any, n_assets: int, first: str, last: str) -> tuple[float, int]:
    """Wall time of one ranged run over [first, last], and the events it recorded."""
    from dagster import materialize

    started = time.perf_counter()
    result = materialize(chain(partitions_def, n_assets), instance=instance, tags={RANGE_START: first, RANGE_END: last})
    wall = time.perf_counter() - started
    assert result.success
    return wall, len(instance.all_logs(result.run_id))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--assets", type=int, default=2)
    parser.add_argument("--years", type=float, default=0, help="history as fundarb backfill cuts it (month-long runs)")
    parser.add_argument("--unit", choices=("hour", "day", "both"), default="both", help="with --years: which keys")
    args = parser.parse_args(argv)
    if args.years:
        history(args.years, args.assets, args.unit)
        return
    from dagster import DagsterInstance, DailyPartitionsDefinition, HourlyPartitionsDefinition

    hours = 48 if args.quick else 744
    end = START + timedelta(hours=hours - 1)
    hourly = (
        HourlyPartitionsDefinition(start_date="2024-01-01-00:00"),
        "2024-01-01-00:00",
        end.strftime("%Y-%m-%d-%H:00"),
    )
    days = (end - START).days + 1
    daily = (DailyPartitionsDefinition(start_date="2024-01-01"), "2024-01-01", end.strftime("%Y-%m-%d"))
    os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"  # as fundarb's instance sets it
    print(f"one ranged run of {args.assets} trivial assets: {hours} hourly keys, or the same span as {days} daily keys")
    cases = [  # label, partitions, dagster.yaml, DAGSTER_EVENT_BATCH_SIZE
        ("sqlite (default), hourly", hourly, hours, "", "0"),
        ("sqlite, batched event writes, hourly", hourly, hours, "", "1000"),
        ("consolidated sqlite, hourly", hourly, hours, CONSOLIDATED, "0"),
        ("sqlite (default), daily", daily, days, "", "0"),
    ]
    if os.environ.get(PG_URL_ENV):  # fundarb's Postgres instance (issue #18): the same runs on its storage
        cases += [
            ("postgres, hourly", hourly, hours, POSTGRES_STORAGE, "0"),
            ("postgres, batched event writes, hourly", hourly, hours, POSTGRES_STORAGE, "1000"),
            ("postgres, daily", daily, days, POSTGRES_STORAGE, "0"),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, (pdef, first, last), keys, yaml, batch) in enumerate(cases):
            home = Path(tmp) / str(i)
            home.mkdir()
            if yaml:
                (home / "dagster.yaml").write_text(yaml.format(base=home / "events"))
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = batch
            with DagsterInstance.from_config(str(home)) as instance:
                wall, events = one_run(instance, pdef, args.assets, first, last)
            per = wall / (keys * args.assets) * 1000
            print(f"  {label:38s} {keys:4d} keys: {wall:7.1f} s, {events:6d} events, {per:6.1f} ms per asset-partition")
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "0"
        pdef, first, last = hourly
        with DagsterInstance.ephemeral() as instance:
            wall, events = one_run(instance, pdef, args.assets, first, last)
        print(f"  {'in memory (ephemeral), hourly':38s} {hours:4d} keys: {wall:7.1f} s, {events:6d} events")


def history(years: float, n_assets: int, unit: str) -> None:
    """`years` of history in month-long ranged runs (what `fundarb backfill` runs: 31 days per run), on
    fundarb's instance settings (sqlite, batched event writes, planned-event subsets): runs, wall time and
    events, with hourly keys (the live partitions) and with daily keys (history_job's)."""
    from dagster import DagsterInstance, DailyPartitionsDefinition, HourlyPartitionsDefinition

    from fundarb_dagster.instance import EVENT_BATCH_ENV, PLANNED_EVENTS_ENV

    os.environ[PLANNED_EVENTS_ENV], os.environ[EVENT_BATCH_ENV] = "true", "1000"
    total_days = round(years * 365.25)
    months = [(d, min(d + 31, total_days)) for d in range(0, total_days, 31)]
    units = ("hour", "day") if unit == "both" else (unit,)
    print(f"{years:g} years = {total_days} days of history, {n_assets} trivial assets, {len(months)} month-long runs")
    for u in units:
        if u == "hour":
            pdef, fmt, step, per_day = HourlyPartitionsDefinition("2020-01-01-00:00"), "%Y-%m-%d-%H:00", 3600, 24
        else:
            pdef, fmt, step, per_day = DailyPartitionsDefinition("2020-01-01"), "%Y-%m-%d", 86400, 1
        start = datetime(2020, 1, 1)
        wall = events = 0.0
        with tempfile.TemporaryDirectory() as tmp, DagsterInstance.from_config(tmp) as instance:
            for lo, hi in months:
                first = (start + timedelta(days=lo)).strftime(fmt)
                last = (start + timedelta(days=hi) - timedelta(seconds=step)).strftime(fmt)
                w, e = one_run(instance, pdef, n_assets, first, last)
                wall, events = wall + w, events + e
        keys = total_days * per_day
        per = wall / (keys * n_assets) * 1000
        label = "hourly" if u == "hour" else "daily"
        print(
            f"  {label} keys: {keys:6d} keys x {n_assets} assets in {len(months)} runs: {wall:7.1f} s, "
            f"{int(events):7d} events, {per:5.2f} ms per asset-partition"
        )


if __name__ == "__main__":
    main()
