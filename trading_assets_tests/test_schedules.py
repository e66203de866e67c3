import datetime as dt

import dagster as dg
import pytest

from trading_assets.definitions import defs
from trading_assets.jobs import WEEKLY_ENVIRONMENT_JOB
from trading_assets.schedules import daily_after_close, latest_session, weekly_market_environment


def at(day: str, hour: int = 18, tz=dt.UTC):
    return dg.build_schedule_context(
        scheduled_execution_time=dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=tz),
        repository_def=defs.get_repository_def(),  # validates the partition key against the job
    )


@pytest.mark.parametrize(
    "sunday,session",
    [
        ("2024-11-24", "2024-11-22"),  # an ordinary week: Friday
        ("2024-03-31", "2024-03-28"),  # Good Friday closed: Thursday
        ("2024-12-29", "2024-12-27"),
    ],
)
def test_weekly_schedule_targets_the_weeks_latest_session(sunday, session):
    assert weekly_market_environment.cron_schedule == "0 18 * * 0"
    assert weekly_market_environment.execution_timezone == "UTC"
    assert weekly_market_environment.job_name == WEEKLY_ENVIRONMENT_JOB
    requests = list(weekly_market_environment.evaluate_tick(at(sunday)).run_requests)
    assert [r.partition_key for r in requests] == [session]


def test_weekly_job_covers_the_environment_and_what_it_needs():
    job = defs.resolve_job_def(WEEKLY_ENVIRONMENT_JOB)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"raw_prices", "indicators", "market_environment"} <= keys
    assert "watchlist" not in keys


def test_daily_schedule_skips_closed_days_and_runs_on_sessions():
    ny = dt.timezone(dt.timedelta(hours=-5))
    tick = daily_after_close.evaluate_tick(
        at("2024-11-28", 18, ny)
    )  # Thanksgiving: a weekday, closed
    assert not tick.run_requests and "not a XNYS session" in tick.skip_message
    tick = daily_after_close.evaluate_tick(at("2024-11-29", 18, ny))
    assert [r.partition_key for r in tick.run_requests] == ["2024-11-29"]


def test_latest_session():
    assert latest_session(dt.date(2024, 7, 4)) == dt.date(2024, 7, 3)
    assert latest_session(dt.date(1999, 1, 1)) is None
