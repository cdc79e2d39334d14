"""Schedules: the daily rebuild of yesterday's daily partitions."""

from datetime import timedelta
from typing import Any

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

DAILY_CRON = "40 0 * * *"  # 00:40 UTC: the last hour of yesterday has had 40 minutes to land and load


def build_schedules(jobs: list[Any]) -> list[Any]:
    by_name = {job.name: job for job in jobs}
    if "daily_job" not in by_name:
        return []

    @schedule(
        name="daily_schedule",
        cron_schedule=DAILY_CRON,
        execution_timezone="UTC",
        job=by_name["daily_job"],
        default_status=DefaultScheduleStatus.RUNNING,
        description="Rebuild yesterday's partition of every daily asset (ohlcv_1d, funding history...).",
    )
    def daily_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        day = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
        return RunRequest(run_key=f"daily:{day}", partition_key=day)

    return [daily_schedule]
