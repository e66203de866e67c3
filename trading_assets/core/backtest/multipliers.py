"""Per-session threshold multipliers of the stdev strategy, and their validation.

A multipliers frame has one row per session: ``date, mr_arm, mr_trigger, tc_arm, tc_trigger,
confidence, reasoning, source``. On that session the stdev thresholds are ``mr_arm_z x mr_arm``,
``mr_trigger_z x mr_trigger``, ``tc_arm_z x tc_arm`` and ``tc_trigger_z x tc_trigger``; a session
without a row uses 1.0 (the configured thresholds). Each multiplier must be a number in
[MULTIPLIER_MIN, MULTIPLIER_MAX]; ``confidence`` is null or a number in [0, 1]; ``reasoning`` and
``source`` are free text (null allowed). Anything else - a missing column, a null or unparsable
date, a NaN or out-of-range multiplier, a date given twice - is a MultiplierError naming the row
(and, from a CSV, the file and line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from trading_assets.core.backtest.result import BacktestInputError

MULTIPLIER_COLUMNS: tuple[str, ...] = ("mr_arm", "mr_trigger", "tc_arm", "tc_trigger")
COLUMNS: tuple[str, ...] = ("date", *MULTIPLIER_COLUMNS, "confidence", "reasoning", "source")
MULTIPLIER_MIN, MULTIPLIER_MAX = 0.5, 2.0
NEUTRAL = 1.0  # the multiplier of a session without a row
DEFAULT_CONFIDENCE = 1.0
DEFAULT_REASONING = "no multiplier set for this session: the configured thresholds"
DEFAULT_SOURCE = "default"
# How many bad rows an error message quotes.
_SHOWN = 5


class MultiplierError(BacktestInputError):
    """A threshold-multipliers frame or file that cannot be used (the message says where and why)."""


def default_multipliers(dates: Iterable) -> pd.DataFrame:
    """A valid multipliers frame with 1.0 on every one of ``dates`` (sorted, duplicates dropped)."""
    days = _days(pd.Series(list(dates), dtype=object), lambda i: f"dates[{i}]")
    days = np.unique(days)
    n = days.shape[0]
    return pd.DataFrame({
        "date": days.astype(object),
        **{c: np.full(n, NEUTRAL) for c in MULTIPLIER_COLUMNS},
        "confidence": np.full(n, DEFAULT_CONFIDENCE),
        "reasoning": np.full(n, DEFAULT_REASONING, dtype=object),
        "source": np.full(n, DEFAULT_SOURCE, dtype=object),
    })  # fmt: skip


def validate_multipliers(frame: pd.DataFrame) -> pd.DataFrame:
    """The checked frame: COLUMNS only, dates as datetime.date, multipliers and confidence float64,
    sorted by date. Raises MultiplierError naming the bad rows (``row i`` = i-th row of ``frame``)."""
    return _validated(frame, "threshold multipliers", lambda i: f"row {i}")


def read_multipliers_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate a CSV with a header line of COLUMNS (extra columns are ignored). Errors
    name the file and the line (the header is line 1)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"reasoning": object, "source": object, "date": object})
    except FileNotFoundError as exc:
        raise MultiplierError(f"{path}: no such file") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MultiplierError(f"{path}: not a readable CSV: {exc}") from exc
    # Line numbers hold while the file has no quoted field spanning lines (the reasoning column
    # is meant to be one line).
    return _validated(frame, str(path), lambda i: f"line {i + 2}")


def multipliers_by_session(frame: pd.DataFrame | None, sessions: np.ndarray) -> np.ndarray:
    """A (4, n_sessions) float64 array: row j is MULTIPLIER_COLUMNS[j] on each of ``sessions``
    (datetime64[D]); NEUTRAL where ``frame`` (validated) has no row for the session."""
    out = np.full((len(MULTIPLIER_COLUMNS), sessions.shape[0]), NEUTRAL)
    if frame is None or len(frame) == 0 or sessions.shape[0] == 0:
        return out
    days = pd.to_datetime(frame["date"]).to_numpy().astype("datetime64[D]")
    where = np.searchsorted(sessions, days)
    found = (where < sessions.shape[0]) & (
        sessions[np.minimum(where, sessions.shape[0] - 1)] == days
    )
    for j, name in enumerate(MULTIPLIER_COLUMNS):
        out[j, where[found]] = frame[name].to_numpy(dtype=np.float64)[found]
    return out


def _validated(frame: object, what: str, locate: Callable[[int], str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise MultiplierError(f"{what} must be a DataFrame, got {type(frame).__name__}")
    absent = [c for c in COLUMNS if c not in frame.columns]
    if absent:
        raise MultiplierError(
            f"{what}: missing column(s) {absent}; expected {list(COLUMNS)}, got "
            f"{[str(c) for c in frame.columns]}"
        )
    frame = frame.reset_index(drop=True)
    days = _days(frame["date"], locate, what)
    problems: list[str] = []
    numbers = {}
    for name in (*MULTIPLIER_COLUMNS, "confidence"):
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        not_numeric = frame[name].notna().to_numpy() & np.isnan(values)
        if name == "confidence":
            bad = not_numeric | (values < 0.0) | (values > 1.0)
            rule = "null or a number in [0, 1]"
        else:
            bad = ~np.isfinite(values) | (values < MULTIPLIER_MIN) | (values > MULTIPLIER_MAX)
            rule = f"a number in [{MULTIPLIER_MIN}, {MULTIPLIER_MAX}]"
        problems += [
            f"{locate(i)}: {name}={_shown(frame[name].iloc[i])} must be {rule}"
            for i in np.flatnonzero(bad)
        ]
        numbers[name] = values
    order = np.argsort(days, kind="stable")
    repeated = order[1:][days[order][1:] == days[order][:-1]]
    problems += [f"{locate(i)}: date {days[i]} appears more than once" for i in np.sort(repeated)]
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise MultiplierError(f"{what}: {len(problems)} bad value(s): {shown}{more}")
    out = pd.DataFrame({
        "date": days.astype(object),
        **numbers,
        "reasoning": frame["reasoning"].astype(object).where(frame["reasoning"].notna(), None),
        "source": frame["source"].astype(object).where(frame["source"].notna(), None),
    })  # fmt: skip
    return out.iloc[order].reset_index(drop=True)[list(COLUMNS)]


def _shown(value: object) -> str:
    """A cell as a reader wrote it: 2.5, nan, 'high' (not np.float64(2.5))."""
    return repr(float(value)) if isinstance(value, float | np.floating) else repr(value)


def _days(dates: pd.Series, locate: Callable[[int], str], what: str = "dates") -> np.ndarray:
    """datetime64[D] of each date (datetime.date, datetime64 or ISO text); MultiplierError naming
    the first rows that are null or not dates."""
    values = dates.to_numpy(dtype=object)
    days = np.empty(values.shape[0], dtype="datetime64[D]")
    bad = []
    for i, value in enumerate(values):  # one row per session: a few thousand at most
        try:
            day = pd.Timestamp(value)
        except (TypeError, ValueError):
            day = pd.NaT
        if day is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            bad.append(i)
        else:
            days[i] = np.datetime64(day.date(), "D")
    if bad:
        shown = "; ".join(f"{locate(i)}: date {values[i]!r} is not a date" for i in bad[:_SHOWN])
        raise MultiplierError(f"{what}: {len(bad)} bad date(s): {shown}")
    return days
