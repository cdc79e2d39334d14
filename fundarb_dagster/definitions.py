"""The one Definitions object of the fundarb code location (loaded by workspace.yaml).

The root: it alone instantiates the resources and picks the executor; nothing under `defs/` imports it.
"""

from typing import Any

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules

from .defs import jobs, schedules, sensors
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
from .defs.raw import assets as raw_assets
from .defs.raw import checks as raw_checks
from .defs.resources import AlertChannelsResource, DataDirResource, SourceConfigResource, WarehouseResource
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

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(CHECK_MODULES)
all_jobs = jobs.build_jobs(all_assets)
freshness_checks = [*raw_checks.RAW_FRESHNESS_CHECKS, *market_checks.OHLCV_FRESHNESS_CHECKS]

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=all_jobs,
    sensors=sensors.build_sensors(freshness_checks),
    schedules=schedules.build_schedules(all_jobs),
    resources=build_resources(),
    # Steps that write DuckDB run one at a time anyway (the "duckdb" pool, limit 1): running them in the
    # run's own process saves a Python start and a code-location load per step (seconds each).
    executor=in_process_executor,
)
