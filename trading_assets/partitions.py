"""Trading-day partitions: one partition per session of an exchange calendar, nothing else.

Keys are session dates (YYYY-MM-DD) of ``exchange_calendars`` (XNYS by default): no weekend or
holiday key exists, so no scheduled or backfill run can land on a closed day. Dagster builds the
windows from a weekday cron with every non-session weekday excluded; a session's window therefore
runs to the next session (a Friday's window ends on Monday), which the IO managers handle by
storing rows with ``window.start <= date < window.end``.
"""

from __future__ import annotations

import datetime as dt
import functools

import dagster as dg
import exchange_calendars as xcals
import pandas as pd

from trading_assets import settings

PARTITION_FORMAT = "%Y-%m-%d"
_CRON_DAYS = ("1", "2", "3", "4", "5", "6", "0")  # exchange_calendars weekmask is Monday-first


@functools.lru_cache(maxsize=8)
def trading_calendar(code: str, start: str) -> xcals.ExchangeCalendar:
    """The exchange calendar from ``start`` to its own horizon (about a year ahead)."""
    try:
        return xcals.get_calendar(code, start=start)
    except xcals.errors.InvalidCalendarName as exc:
        raise settings.ConfigurationError(f"unknown exchange calendar {code!r}: {exc}") from exc


def trading_day_partitions(code: str, start: str) -> dg.TimeWindowPartitionsDefinition:
    """Daily partitions whose keys are exactly the calendar's sessions from ``start`` on.

    ``end_offset=1`` makes the session in progress a partition too, so a schedule after today's
    close can materialise today.
    """
    cal = trading_calendar(code, start)
    weekmask = cal.weekmask  # e.g. "1111100"
    cron_days = ",".join(d for d, on in zip(_CRON_DAYS, weekmask, strict=True) if on == "1")
    weekdays = pd.bdate_range(cal.first_session, cal.last_session, freq="C", weekmask=weekmask)
    closed = weekdays.difference(cal.sessions)
    return dg.TimeWindowPartitionsDefinition(
        start=cal.first_session.strftime(PARTITION_FORMAT),
        fmt=PARTITION_FORMAT,
        cron_schedule=f"0 0 * * {cron_days}",
        timezone=str(cal.tz),
        end_offset=1,
        exclusions=[dt.datetime(d.year, d.month, d.day) for d in closed],
    )


def sessions_between(code: str, start: str, first: dt.date, last: dt.date) -> list[dt.date]:
    """The calendar's sessions from ``first`` to ``last``, both inclusive."""
    cal = trading_calendar(code, start)
    lo = max(pd.Timestamp(first), cal.first_session)
    hi = min(pd.Timestamp(last), cal.last_session)
    if lo > hi:
        return []
    return [d.date() for d in cal.sessions_in_range(lo, hi)]


def window_sessions(code: str, start: str, window: dg.TimeWindow) -> list[dt.date]:
    """The sessions inside a partition time window (``start <= session < end``)."""
    first = window.start.date()
    last = window.end.date() - dt.timedelta(days=1)
    return sessions_between(code, start, first, last)


CALENDAR_CODE: str = settings.env(settings.CALENDAR, settings.DEFAULT_CALENDAR) or settings.DEFAULT_CALENDAR
START_DATE: str = settings.env(settings.START_DATE, settings.DEFAULT_START_DATE) or settings.DEFAULT_START_DATE
trading_days = trading_day_partitions(CALENDAR_CODE, START_DATE)


def sessions_in_window(window: dg.TimeWindow) -> list[dt.date]:
    """Sessions of the configured calendar inside ``window``."""
    return window_sessions(CALENDAR_CODE, START_DATE, window)
