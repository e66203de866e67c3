"""Schedules: the daily run after the close and the weekly market environment.

Both pick the partition from the exchange calendar, so neither can start a run on a closed day.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from trading_assets.jobs import main_job, weekly_environment_job
from trading_assets.partitions import CALENDAR_CODE, PARTITION_FORMAT, START_DATE, trading_calendar

DAILY_SCHEDULE = "daily_after_close"
WEEKLY_ENVIRONMENT_SCHEDULE = "weekly_market_environment"


def latest_session(on_or_before: dt.date) -> dt.date | None:
    """The last session of the configured calendar on or before the given date."""
    cal = trading_calendar(CALENDAR_CODE, START_DATE)
    day = pd.Timestamp(on_or_before)
    if day < cal.first_session:
        return None
    return cal.date_to_session(min(day, cal.last_session), direction="previous").date()


@dg.schedule(
    name=WEEKLY_ENVIRONMENT_SCHEDULE,
    job=weekly_environment_job,
    cron_schedule="0 18 * * 0",  # Sunday 18:00 UTC: the week's last session is final
    execution_timezone="UTC",
    description="Materialise the market environment of the week's latest session.",
)
def weekly_market_environment(context: dg.ScheduleEvaluationContext):
    session = latest_session(context.scheduled_execution_time.date())
    if session is None:
        return dg.SkipReason("no session before the calendar start")
    key = session.strftime(PARTITION_FORMAT)
    return dg.RunRequest(run_key=f"weekly-environment-{key}", partition_key=key)


@dg.schedule(
    name=DAILY_SCHEDULE,
    job=main_job,
    cron_schedule="30 18 * * 1-5",  # 18:30 New York, after the 16:00 close and Yahoo's settle
    execution_timezone="America/New_York",
    description="After each session's close: fetch the day's prices and recompute everything downstream.",
)
def daily_after_close(context: dg.ScheduleEvaluationContext):
    today = context.scheduled_execution_time.date()
    if latest_session(today) != today:
        return dg.SkipReason(f"{today} is not a {CALENDAR_CODE} session")
    key = today.strftime(PARTITION_FORMAT)
    return dg.RunRequest(run_key=f"daily-{key}", partition_key=key)


ALL_SCHEDULES = [weekly_market_environment, daily_after_close]
