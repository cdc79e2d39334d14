"""The pipeline's stages: one named job each, what it materializes, on which partitions, and which stages'
successful runs request it (`pipeline_sensor`). The landing sensor requests `hourly_job`; every other stage
follows the stages it reads, over the same event-time window:

    landed files -> hourly_job (raw and execution tables, bars, funding) -> signals_job (spreads,
                    opportunities, alerts) and, once the trader has filled, execution_job (funding
                    reconciliation, live P&L, risk of the live book)
                 hourly_job -> daily_job (a day, once it has ended on the data's clock)
                                 -> funding_job (funding_history feeds it) -> signals_job, execution_job
                                 -> backtests_job (one run per strategy partition, once the stages above are done)

A run of a stage covers the window of the runs that triggered it (one hour, or a ranged run over a
backlog, at most a month of hours: `partitions.BOUNDED_RUNS`), so each new hour of data runs each stage once.
The job name is what the run list shows; its window is in the run's partition range and `fundarb/window`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dagster import AssetCheckKey, AssetKey, AssetsDefinition, AssetSelection, define_asset_job

from ..core.backtest.strategies import STRATEGIES
from ..core.tables import LANDED_TABLES

Unit = Literal["hour", "day"] | None


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: a named job over one kind of partitions (or none)."""

    job: str
    assets: tuple[str, ...]
    unit: Unit  # "hour": hourly partitions, "day": daily, None: unpartitioned
    description: str
    after: tuple[str, ...] = ()  # jobs whose successful runs request this one (none: a sensor's own trigger)
    waits_for: tuple[str, ...] = ()  # jobs with nothing queued, running or ready to run before this one starts
    look_back_h: int = 0  # widen the triggering window back (a settlement pays for the hours before it)
    complete_days: bool = False  # daily: only days that have ended on the data's clock
    # unpartitioned-in-time stages: one run per static partition key (the backtests: one per strategy, each
    # keeping its own materializations), or one run when empty
    partition_keys: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # the job's own run config (a launch from the UI too)
    # Landed streams the stage needs: it runs over the hours from the first of these on, never before any
    # has landed (the execution stage waits for the trader's first fill).
    needs_streams: tuple[str, ...] = ()


BACKTEST_ASSETS = ("backtest_runs", "backtest_equity", "backtest_trades", "backtest_positions", "backtest_book")
BARS = ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "indicators", "book_depth", "open_interest", "liquidations")
FUNDING = ("funding_intervals", "funding_predictions", "funding_rates", "basis")
EXECUTION = ("funding_reconciliation", "live_pnl", "risk_report", "risk_stress")

STAGES: tuple[Stage, ...] = (
    Stage(
        "hourly_job",
        (*LANDED_TABLES, "instruments", *BARS, *FUNDING, "leverage_tiers"),
        "hour",
        "An hour (or a range) of every landed stream into its table (raw: market data; execution: the trader's "
        "orders, fills, positions, balances, funding payments), then its bars (1m from trades, 5m, "
        "1h, TA-Lib indicators, book depth, open interest and liquidations per hour) and its funding (the "
        "interval history, predicted and settled rates, basis), and the venues' leverage tiers as fetched now. "
        "Requested by landing_sensor once an hour's files are complete.",
    ),
    Stage(
        "daily_job",
        ("ohlcv_8h", "ohlcv_1d", "funding_history", "borrow_rates"),
        "day",
        "8-hour and daily bars, the venues' settled funding history and spot borrow rates, for each day once it "
        "has ended on the data's clock (an hour of a later day has loaded).",
        after=("hourly_job",),
        waits_for=("hourly_job",),
        complete_days=True,
    ),
    Stage(
        "funding_job",
        FUNDING,
        "hour",
        "The funding tables again over the days daily_job fetched history for (funding_history feeds the "
        "interval history and the settled rates).",
        after=("daily_job",),
        waits_for=("hourly_job", "daily_job"),
    ),
    Stage(
        "signals_job",
        ("funding_spreads", "opportunities", "alerts"),
        "hour",
        "Cross-venue funding spreads (from 8 h before the window: a settlement pays for the hours before "
        "it), the ranked opportunities as of the latest hour, and the alerts.",
        after=("hourly_job", "funding_job"),
        waits_for=("hourly_job", "daily_job", "funding_job"),
        look_back_h=8,
    ),
    Stage(
        "execution_job",
        EXECUTION,
        "hour",
        "The trader's funding reconciled with the settled rates (a mismatch fails the blocking check and "
        "alerts), its live P&L, and the risk report of the live book, over the window hourly_job (or "
        "funding_job) loaded: from the trader's first fill on.",
        after=("hourly_job", "funding_job"),
        waits_for=("hourly_job", "daily_job", "funding_job"),
        config={"ops": {"risk": {"config": {"book": "live"}}}},
        needs_streams=("fills",),
    ),
    Stage(
        "backtests_job",
        (*BACKTEST_ASSETS, "backtest_sweep", "risk_report", "risk_stress"),
        None,
        "Every strategy's backtest and parameter sweep over the warehouse, then the risk report of its "
        "book (the backtest's; the live book's is execution_job's): once a day (after daily_job), when the "
        "stages above have nothing left to do.",
        after=("daily_job",),
        waits_for=("hourly_job", "daily_job", "funding_job", "signals_job", "execution_job"),
        partition_keys=tuple(sorted(STRATEGIES)),
        config={"ops": {"risk": {"config": {"book": "backtest"}}}},  # the live book's risk is execution_job's
    ),
)
STAGE_BY_JOB = {stage.job: stage for stage in STAGES}

# Imported history on monthly partitions (`defs/history.py`): run by `fundarb backfill`, from the UI, and by the
# landing sensor for imported whole days (the live path stays hourly).
HISTORY_GROUP = "history"
HISTORY_JOB = "history_job"

FRESHNESS_CHECKS = (("raw_trades", "raw_trades_is_fresh"), ("ohlcv_1m", "ohlcv_1m_is_fresh"))


def build_jobs() -> list[Any]:
    """The stage jobs (their partitions are their assets'), `freshness_job`, and `instruments_job`."""
    jobs = [
        define_asset_job(
            stage.job,
            selection=AssetSelection.assets(*stage.assets),
            description=stage.description,
            tags={"fundarb/stage": stage.job},
            config=stage.config or None,
        )
        for stage in STAGES
    ]
    jobs.append(
        define_asset_job(
            "freshness_job",
            selection=AssetSelection.checks(*(AssetCheckKey(AssetKey(a), name) for a, name in FRESHNESS_CHECKS))
            | AssetSelection.assets("alerts"),
            description="The freshness checks on the wall clock, then the alerts (stale streams, failed checks): "
            "run every 15 minutes by freshness_schedule when the source is live.",
            tags={"fundarb/stage": "freshness_job"},
        )
    )
    jobs.append(
        define_asset_job(
            HISTORY_JOB,
            selection=AssetSelection.groups(HISTORY_GROUP),
            description="Imported history a month per partition (the `history` group: the hourly stage's tables, "
            "funding_spreads and the 8h/1d bars on monthly partitions, in runs of up to 12 months; their checks "
            "once per run): what `fundarb backfill` runs for the months up to the newest landed day.",
            tags={"fundarb/stage": HISTORY_JOB},
        )
    )
    jobs.append(
        define_asset_job(
            "instruments_job",
            selection=AssetSelection.assets("instruments"),
            description="Reload the instrument registry (instruments.json) into the warehouse.",
        )
    )
    return jobs


def keys_with_partitions(assets: Sequence[Any], partitions_def: Any) -> list[Any]:
    """Asset keys of every asset whose partitions definition equals `partitions_def`."""
    keys = []
    for item in assets:
        if isinstance(item, AssetsDefinition) and item.partitions_def == partitions_def:
            keys.extend(item.keys)
    return sorted(keys, key=lambda k: k.to_user_string())


def stage_asset_names(stages: Sequence[Stage] = STAGES) -> list[str]:
    """Every asset some stage materializes, once (a test holds this against the asset graph)."""
    return sorted({name for stage in stages for name in stage.assets})
