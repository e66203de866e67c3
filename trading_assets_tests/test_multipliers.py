"""Threshold multipliers of the stdev strategy: validation of frames and CSV files, the defaults,
and the per-session alignment the engine uses."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest import (
    BacktestInputError,
    MultiplierError,
    default_multipliers,
    read_multipliers_csv,
    validate_multipliers,
)
from trading_assets.core.backtest.multipliers import COLUMNS, multipliers_by_session

DAY1, DAY2, DAY3 = dt.date(2025, 7, 21), dt.date(2025, 7, 22), dt.date(2025, 7, 23)


def frame(**changes) -> pd.DataFrame:
    base = pd.DataFrame({
        "date": [DAY2, DAY1], "mr_arm": [1.5, 0.5], "mr_trigger": [1.0, 2.0],
        "tc_arm": [0.8, 1.0], "tc_trigger": [1.0, 1.2], "confidence": [0.7, None],
        "reasoning": ["VIX spike: demand deeper extremes", None], "source": ["analyst", "llm"],
    })  # fmt: skip
    for column, values in changes.items():
        base[column] = values
    return base


def test_a_valid_frame_is_sorted_typed_and_kept():
    checked = validate_multipliers(frame())
    assert list(checked.columns) == list(COLUMNS)
    assert list(checked["date"]) == [DAY1, DAY2]
    assert list(checked["mr_arm"]) == [0.5, 1.5] and checked["mr_arm"].dtype == np.float64
    assert np.isnan(checked["confidence"].iloc[0]) and checked["reasoning"].iloc[0] is None
    as_datetime64 = validate_multipliers(frame(date=pd.to_datetime([DAY2, DAY1])))
    pd.testing.assert_frame_equal(as_datetime64, checked)
    as_text = validate_multipliers(frame(date=["2025-07-22", "2025-07-21"]))
    pd.testing.assert_frame_equal(as_text, checked)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mr_arm": [2.5, 1.0]}, r"row 0: mr_arm=2.5 must be a number in \[0.5, 2.0\]"),
        ({"tc_trigger": [1.0, 0.49]}, "row 1: tc_trigger=0.49"),
        ({"mr_trigger": [np.nan, 1.0]}, "row 0: mr_trigger=nan"),
        ({"tc_arm": ["high", 1.0]}, "row 0: tc_arm='high'"),
        ({"confidence": [1.5, 0.2]}, r"row 0: confidence=1.5 must be null or a number in \[0, 1\]"),
        ({"date": [DAY1, DAY1]}, "row 1: date 2025-07-21 appears more than once"),
        ({"date": [DAY1, None]}, "row 1: date None is not a date"),
        ({"date": [DAY1, "yesterday"]}, "row 1: date 'yesterday' is not a date"),
    ],
)
def test_bad_values_are_named(changes, message):
    with pytest.raises(MultiplierError, match=message):
        validate_multipliers(frame(**changes))


def test_a_missing_column_or_not_a_frame_is_named():
    with pytest.raises(MultiplierError, match=r"missing column\(s\) \['tc_trigger'\]"):
        validate_multipliers(frame().drop(columns="tc_trigger"))
    with pytest.raises(MultiplierError, match="must be a DataFrame"):
        validate_multipliers([{"date": DAY1}])
    assert issubclass(MultiplierError, BacktestInputError)


def test_every_bad_row_is_counted():
    bad = pd.concat([frame()] * 4, ignore_index=True).assign(
        date=pd.date_range("2025-01-01", periods=8), mr_arm=3.0
    )
    with pytest.raises(MultiplierError, match=r"8 bad value\(s\).*\(and 3 more\)"):
        validate_multipliers(bad)


def test_default_multipliers_are_neutral_and_valid():
    defaults = default_multipliers([DAY3, DAY1, DAY1, pd.Timestamp(DAY2)])
    assert list(defaults["date"]) == [DAY1, DAY2, DAY3]
    assert (defaults[["mr_arm", "mr_trigger", "tc_arm", "tc_trigger"]] == 1.0).all().all()
    pd.testing.assert_frame_equal(validate_multipliers(defaults), defaults)
    assert default_multipliers([]).empty


def test_csv_is_read_and_a_bad_row_names_file_and_line(tmp_path):
    good = tmp_path / "multipliers.csv"
    frame().to_csv(good, index=False)
    pd.testing.assert_frame_equal(read_multipliers_csv(good), validate_multipliers(frame()))
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "date,mr_arm,mr_trigger,tc_arm,tc_trigger,confidence,reasoning,source\n"
        "2025-07-21,1.0,1.0,1.0,1.0,0.5,calm,llm\n"
        "2025-07-22,1.0,1.0,,1.0,0.5,forgot one,llm\n"
    )
    with pytest.raises(MultiplierError, match=rf"^{re.escape(str(bad))}: .*line 3: tc_arm=nan"):
        read_multipliers_csv(bad)
    with pytest.raises(MultiplierError, match="no such file"):
        read_multipliers_csv(tmp_path / "absent.csv")
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(COLUMNS) + "\n")
    assert read_multipliers_csv(header_only).empty


def test_multipliers_by_session_fill_neutral_where_no_row():
    sessions = np.array([DAY1, DAY2, DAY3], dtype="datetime64[D]")
    checked = validate_multipliers(frame(date=[DAY3, dt.date(2025, 7, 18)]))
    by_session = multipliers_by_session(checked, sessions)
    np.testing.assert_array_equal(by_session[:, 0], [1.0, 1.0, 1.0, 1.0])  # no row for DAY1
    np.testing.assert_array_equal(by_session[:, 2], [1.5, 1.0, 0.8, 1.0])  # DAY3's row
    np.testing.assert_array_equal(multipliers_by_session(None, sessions), np.ones((4, 3)))
