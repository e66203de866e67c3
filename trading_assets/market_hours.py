"""Session arithmetic on the configured exchange calendar, and the rule that a bar is final only
after its session has closed.

Yahoo serves the bar of the session in progress (and, for a while after the close, one that still
changes). Stored as the session's bar it would stay wrong, so a session's partition can be
materialised only once the calendar's close plus ``DEFAULT_CLOSE_DELAY_MINUTES`` has passed.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from trading_assets.partitions import CALENDAR_CODE, START_DATE, sessions_between, trading_calendar

# After the close, minutes to wait before a session's bar is taken as final (late prints, the
# provider's settlement). The daily schedule runs at 18:30 New York, well after 16:00 + 30 min.
DEFAULT_CLOSE_DELAY_MINUTES = 30


class SessionNotClosedError(RuntimeError):
    """A run asked for a session whose bar is not final yet (market open, or just closed)."""


def now_utc() -> pd.Timestamp:
    """The current time (a function, so a test can move the clock)."""
    return pd.Timestamp.now(tz="UTC")


def _calendar():
    return trading_calendar(CALENDAR_CODE, START_DATE)


def first_session() -> dt.date:
    return _calendar().first_session.date()


def sessions_from_to(first: dt.date, last: dt.date) -> list[dt.date]:
    """The sessions from ``first`` to ``last``, both inclusive."""
    return sessions_between(CALENDAR_CODE, START_DATE, first, last)


def sessions_before(first: dt.date, n: int) -> list[dt.date]:
    """The ``n`` sessions before ``first`` (fewer at the start of the calendar), oldest first."""
    cal = _calendar()
    day = pd.Timestamp(first)
    if n <= 0 or day <= cal.first_session:
        return []
    last = cal.date_to_session(day - pd.Timedelta(days=1), direction="previous")
    idx = cal.sessions.get_loc(last)
    return [d.date() for d in cal.sessions[max(0, idx - n + 1) : idx + 1]]


def session_after(last: dt.date) -> dt.date | None:
    """The session after ``last``, or None past the calendar's horizon."""
    cal = _calendar()
    day = pd.Timestamp(last) + pd.Timedelta(days=1)
    if day > cal.last_session:
        return None
    return cal.date_to_session(day, direction="next").date()


def require_closed(
    session: dt.date,
    delay_minutes: float = DEFAULT_CLOSE_DELAY_MINUTES,
    now: pd.Timestamp | None = None,
) -> None:
    """Raise SessionNotClosedError unless ``session`` closed at least ``delay_minutes`` ago."""
    cal = _calendar()
    close = cal.session_close(pd.Timestamp(session))
    final_at = close + pd.Timedelta(minutes=delay_minutes)
    now = now if now is not None else now_utc()
    if now < final_at:
        local = final_at.tz_convert(cal.tz)
        raise SessionNotClosedError(
            f"session {session} is not closed yet: its bar is final at {local:%Y-%m-%d %H:%M %Z} "
            f"({CALENDAR_CODE} close + {delay_minutes:g} min); it is now "
            f"{now.tz_convert(cal.tz):%Y-%m-%d %H:%M %Z}. A bar taken earlier would be the "
            "session's partial bar. Run it after that time (the daily schedule does), or "
            "materialise only sessions that have closed."
        )
