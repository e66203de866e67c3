"""Bar preparation shared by every strategy: the long ``bars`` frame as flat numpy arrays.

``prepare_bars(bars, columns)`` validates the frame and returns a frozen ``Bars``: rows sorted by
(symbol, date), symbol k owning rows ``bounds[k]:bounds[k + 1]``, each row's symbol code and date
code (an index into ``sessions``, the sorted union of every date in ``bars``), and the requested
columns as contiguous float64 arrays (NaN for nulls). Kernels walk one symbol's contiguous rows;
nothing here pivots or loops over symbols in Python.

Input rules: ``symbol``, ``date`` and ``columns`` must be there (BacktestInputError naming the
absent ones); dates may be datetime.date objects, datetime64 (DuckDB's DATE) or tz-aware
timestamps (their local date); a null symbol or date, a non-numeric column or a (symbol, date)
appearing twice is a BacktestInputError. Null prices and indicators are kept as NaN: what a NaN
means is each strategy's rule (a bar with a NaN open/high/low/close is not traded on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from trading_assets.core.backtest.result import BacktestInputError
from trading_assets.core.frames import reject_duplicate_keys, require_columns

# The sorted-input fast path and the (symbol, date) sort are the indicators' own (one sort rule
# for the project); their errors are re-raised here as BacktestInputError.
from trading_assets.core.indicators.inputs import (
    DuplicateSessionError,
    IndicatorInputError,
    _session_days,
    _sort_plan,
)

KEY_COLUMNS: tuple[str, ...] = ("symbol", "date")
OHLC_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


@dataclass(frozen=True, eq=False)
class Bars:
    """One backtest's bars as flat arrays sorted by (symbol, date). Treat the arrays as read-only."""

    symbols: np.ndarray  # object: symbol names, sorted; symbol code k -> symbols[k]
    bounds: np.ndarray  # int64, n_symbols + 1: symbol k owns rows bounds[k]:bounds[k + 1]
    symbol_codes: np.ndarray  # int64 per row
    sessions: np.ndarray  # datetime64[D]: the sorted union of every date in bars
    date_codes: np.ndarray  # int64 per row: index into sessions (strictly rising within a symbol)
    columns: Mapping[str, np.ndarray]  # float64 per row, contiguous, NaN for nulls

    @property
    def n_rows(self) -> int:
        return int(self.symbol_codes.shape[0])

    @property
    def n_symbols(self) -> int:
        return int(self.symbols.shape[0])

    @property
    def n_sessions(self) -> int:
        return int(self.sessions.shape[0])

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]

    def session_dates(self) -> np.ndarray:
        """The sessions as datetime.date objects (an object array), for output frames."""
        return self.sessions.astype(object)


def prepare_bars(bars: pd.DataFrame, columns: Sequence[str]) -> Bars:
    """Validate ``bars`` and return its ``symbol``/``date`` keys and float ``columns`` as a Bars.

    Raises BacktestInputError for a non-DataFrame, a missing column, a null symbol or date, a
    non-numeric column or a duplicated (symbol, date). An empty frame gives an empty Bars.
    """
    columns = tuple(dict.fromkeys(columns))  # unique, in order
    require_columns(bars, (*KEY_COLUMNS, *columns), "bars", BacktestInputError)
    try:
        days = _session_days(bars["date"])
        order, bounds, symbols = _sort_plan(bars["symbol"], days)
    except DuplicateSessionError:
        # The standard message of every core rule, quoting the offending keys.
        reject_duplicate_keys(bars, KEY_COLUMNS, "bars", BacktestInputError)
        raise  # unreachable: the frame has duplicates
    except IndicatorInputError as exc:
        raise BacktestInputError(f"bars: {exc}") from exc
    if order is not None:
        days = days[order]
    n_symbols = symbols.shape[0]
    symbol_codes = np.repeat(np.arange(n_symbols, dtype=np.int64), np.diff(bounds))
    sessions, date_codes = _session_codes(days)
    arrays = {name: _float_column(bars, name, order) for name in columns}
    return Bars(
        symbols=symbols,
        bounds=bounds,
        symbol_codes=symbol_codes,
        sessions=sessions,
        date_codes=date_codes,
        columns=MappingProxyType(arrays),
    )


def _session_codes(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct days as datetime64[D] and each row's index into them: a presence mask
    over the calendar span (O(rows + days)) instead of np.unique's sort of every row."""
    if days.shape[0] == 0:
        return np.empty(0, dtype="datetime64[D]"), np.empty(0, dtype=np.int64)
    first = days.min()
    offsets = days - first
    present = np.zeros(int(offsets.max()) + 1, dtype=bool)
    present[offsets] = True
    code_of_offset = np.cumsum(present, dtype=np.int64) - 1
    sessions = (np.flatnonzero(present) + first).astype("datetime64[D]")
    return sessions, code_of_offset[offsets]


def _float_column(bars: pd.DataFrame, name: str, order: np.ndarray | None) -> np.ndarray:
    try:
        values = bars[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise BacktestInputError(f"bars column {name!r} has non-numeric values: {exc}") from exc
    values = values if order is None else values[order]
    return np.ascontiguousarray(values)
