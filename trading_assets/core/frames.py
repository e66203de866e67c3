"""Validation of the frames the core rules take: required columns and unique keys.

Written once here; each rule passes its own error class (ScreenInputError, EnvironmentInputError,
SizingError), so a caller still catches the error of the rule it called, and the message names the
frame (``what``) and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

# How many offending keys an error message quotes.
_SHOWN = 5


def require_columns(
    frame: object, columns: Iterable[str], what: str, error_cls: type[Exception]
) -> None:
    """Raise ``error_cls`` unless ``frame`` is a DataFrame holding every one of ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise error_cls(f"{what} must be a DataFrame, got {type(frame).__name__}")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise error_cls(f"{what} frame lacks column(s) {absent}; got {list(frame.columns)}")


def reject_duplicate_keys(
    frame: pd.DataFrame, keys: Sequence[str], what: str, error_cls: type[Exception]
) -> None:
    """Raise ``error_cls`` when two rows of ``frame`` share the same ``keys`` values, quoting a few."""
    keys = list(keys)
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        shown = frame.loc[dup, keys].drop_duplicates().head(_SHOWN).to_dict("records")
        raise error_cls(
            f"{int(dup.sum())} duplicated ({', '.join(keys)}) rows in {what}, e.g. {shown}"
        )
