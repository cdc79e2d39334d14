"""Schedules: `freshness_schedule`, the freshness checks and the alerts on the wall clock, every 15 minutes,
for a live capture (a stopped capture lands nothing, so nothing else would run to notice).

Simulated and replayed sources skip it: their freshness is measured on the data's own clock, by the
checks that run with every hourly_job run.
"""

from typing import Any

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from .resources import SourceConfigResource

FRESHNESS_CRON = "*/15 * * * *"


def build_schedules(jobs: list[Any]) -> list[Any]:
    by_name = {job.name: job for job in jobs}

    @schedule(
        name="freshness_schedule",
        cron_schedule=FRESHNESS_CRON,
        execution_timezone="UTC",
        job=by_name["freshness_job"],
        default_status=DefaultScheduleStatus.RUNNING,
        description="Every 15 minutes for a live source: the freshness checks against the wall clock, then the "
        "alerts (streams stale on the wall clock, failed checks). Skipped for sim and replay sources.",
    )
    def freshness_schedule(context: ScheduleEvaluationContext, source: SourceConfigResource) -> RunRequest | SkipReason:
        kind = source.load().source
        if kind != "live":
            return SkipReason(
                f"source {kind!r} simulates or replays market time: freshness follows the data's clock, checked in "
                "every hourly_job run"
            )
        tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
        return RunRequest(
            run_key=f"freshness:{tick}",
            run_config={"ops": {"alerts": {"config": {"stale_clock": "wall"}}}},
            tags={"fundarb/trigger": "freshness_schedule"},
        )

    return [freshness_schedule]
