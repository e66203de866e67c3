import datetime as dt

import exchange_calendars as xcals
import pytest

from trading_assets.partitions import sessions_between, trading_day_partitions, window_sessions
from trading_assets.settings import ConfigurationError


def test_nyse_keys_are_exactly_the_sessions():
    parts = trading_day_partitions("XNYS", "2023-01-03")
    keys = parts.get_partition_keys(current_time=dt.datetime(2025, 1, 1, 12))
    cal = xcals.get_calendar("XNYS", start="2023-01-03")
    expected = [d.strftime("%Y-%m-%d") for d in cal.sessions_in_range("2023-01-03", "2024-12-31")]
    # end_offset=1: the session in progress (2025-01-02, after the New Year holiday) is a key too,
    # so a schedule after its close can materialise it.
    assert keys == expected + ["2025-01-02"]
    for closed in ("2024-07-04", "2024-12-25", "2024-11-28", "2024-03-29", "2024-06-15", "2025-01-09"):
        assert closed not in keys  # holidays, a Saturday, Good Friday, a national day of mourning


def test_friday_window_covers_the_weekend_with_one_session():
    parts = trading_day_partitions("XNYS", "2024-01-02")
    window = parts.time_window_for_partition_key("2024-11-29")
    assert window.start.date() == dt.date(2024, 11, 29) and window.end.date() == dt.date(2024, 12, 2)
    assert window_sessions("XNYS", "2024-01-02", window) == [dt.date(2024, 11, 29)]


def test_other_calendar_and_start_date():
    asx = trading_day_partitions("XASX", "2024-01-01")
    keys = asx.get_partition_keys(current_time=dt.datetime(2024, 2, 1))
    assert keys[0] == "2024-01-02" and "2024-01-26" not in keys  # Australia Day
    assert sessions_between("XNYS", "2024-01-02", dt.date(2024, 1, 1), dt.date(2024, 1, 3)) == [
        dt.date(2024, 1, 2), dt.date(2024, 1, 3)]


def test_unknown_calendar_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="XNOPE"):
        trading_day_partitions("XNOPE", "2024-01-02")
