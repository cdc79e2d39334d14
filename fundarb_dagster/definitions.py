"""The Definitions of the fundarb code location (loaded by workspace.yaml and `-m fundarb_dagster.definitions`).

The root: it alone instantiates the resources, picks the executor and places the assets on the deployment's
partitions; nothing under `defs/` imports it. Dagster calls `defs()` when it loads the code location, so the
settings it reads (the partitions' start, `defs/partitions.py`) are read then, never at import.
"""

import os
from typing import Any

from dagster import (
    Definitions,
    ExecutorDefinition,
    definitions,
    in_process_executor,
    load_asset_checks_from_modules,
    load_assets_from_modules,
    multiprocess_executor,
)

from .core.config import ConfigError
from .core.warehouse import WAREHOUSE_ENV, check_target
from .defs import history, jobs, schedules, sensors
from .defs.alerts import assets as alerts_assets
from .defs.alerts import checks as alerts_checks
from .defs.backtest import assets as backtest_assets
from .defs.backtest import checks as backtest_checks
from .defs.execution import assets as execution_assets
from .defs.execution import checks as execution_checks
from .defs.funding import assets as funding_assets
from .defs.funding import checks as funding_checks
from .defs.market import assets as market_assets
from .defs.market import checks as market_checks
from .defs.partitions import Partitions, on_partitions, partitions_start
from .defs.raw import assets as raw_assets
from .defs.raw import checks as raw_checks
from .defs.resources import (
    AlertChannelsResource,
    DataDirResource,
    SourceConfigResource,
    WarehouseResource,
    resolve_data_dir,
)
from .defs.risk import assets as risk_assets
from .defs.risk import checks as risk_checks


def build_resources() -> dict[str, Any]:
    """The resources of the code location; paths resolve from the environment when first used."""
    return {
        "duckdb": WarehouseResource(),
        "data_dir": DataDirResource(),
        "source": SourceConfigResource(),
        "alert_channels": AlertChannelsResource(),
    }


ASSET_MODULES = [
    raw_assets,
    market_assets,
    funding_assets,
    alerts_assets,
    backtest_assets,
    risk_assets,
    execution_assets,
]
CHECK_MODULES = [
    raw_checks,
    market_checks,
    funding_checks,
    alerts_checks,
    backtest_checks,
    risk_checks,
    execution_checks,
]

# As declared: on the template partitions (`HOURLY`, `DAILY`). Tests and `fundarb assets` use them as they are.
all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(CHECK_MODULES)
# Imported history: the hourly stage's assets again on monthly partitions, under history/ (defs/history.py).
history_assets = history.history_assets(all_assets)
history_checks = history.history_checks(all_checks)


EXECUTOR_ENV = "FUNDARB_EXECUTOR"
CELERY_BROKER_ENV = "FUNDARB_CELERY_BROKER"
EXECUTORS = ("in_process", "multiprocess", "celery")


def build_executor(name: str | None = None) -> ExecutorDefinition:
    """The executor `FUNDARB_EXECUTOR` names (docs/deploy.md).

    `in_process` (default): steps that write DuckDB run one at a time anyway (the "duckdb" pool, limit 1), so
    running them in the run's own process saves a Python start and a code-location load per step (seconds
    each). `multiprocess`: one process per step. `celery`: steps go to Celery workers on other machines
    through the broker `FUNDARB_CELERY_BROKER` names (Redis; also the result backend), read from the
    environment when the run starts, so its URL is never stored in a run's config."""
    name = name or os.environ.get(EXECUTOR_ENV) or "in_process"
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor
    if name == "celery":
        if not os.environ.get(CELERY_BROKER_ENV):
            raise ConfigError(
                f"{CELERY_BROKER_ENV}: not set; {EXECUTOR_ENV}=celery needs the broker's URL (redis://...)"
            )
        from dagster_celery import celery_executor  # the `celery` extra

        source = {"env": CELERY_BROKER_ENV}
        return celery_executor.configured({"broker": source, "backend": source}, name="celery")
    raise ConfigError(f"{EXECUTOR_ENV}: {name!r} is not one of {list(EXECUTORS)}")


def build_definitions(partitions: Partitions) -> Definitions:
    """The code location on the given partitions: assets, checks, the stage jobs, sensors and schedules. A
    `FUNDARB_WAREHOUSE` that cannot be opened (a bad lake target, a lake without its extensions) stops it
    from loading, naming the variable."""
    check_target(os.environ.get(WAREHOUSE_ENV, ""))
    stage_jobs = jobs.build_jobs()
    return Definitions(
        assets=on_partitions([*all_assets, *history_assets], partitions),
        asset_checks=on_partitions([*all_checks, *history_checks], partitions),
        jobs=stage_jobs,
        sensors=sensors.build_sensors(partitions, stage_jobs),
        schedules=schedules.build_schedules(stage_jobs),
        resources=build_resources(),
        executor=build_executor(),
    )


@definitions
def defs() -> Definitions:
    """What Dagster loads: the partitions start at `FUNDARB_PARTITIONS_START`, else the first landed day of
    the data folder (`FUNDARB_DATA_DIR`), else today."""
    return build_definitions(partitions_start(resolve_data_dir()))
