"""The public entry points: compute_indicators and continue_obv."""

from __future__ import annotations

from collections.abc import Iterable

import numba
import numpy as np
import pandas as pd

from trading_assets.core.indicators.constants import (
    _FLOAT_COLUMNS,
    _N_FLOAT,
    _RS_RAW,
    HIGHER_HIGH,
    INDICATOR_COLUMNS,
    LOWER_LOW,
    REQUIRED_COLUMNS,
)
from trading_assets.core.indicators.inputs import (
    IndicatorInputError,
    _float_column,
    _reordered,
    _session_days,
    _sort_plan,
    _symbol_column,
)
from trading_assets.core.indicators.per_symbol import (
    _all_symbols,
)
from trading_assets.core.indicators.project_columns import (
    _rs_rating,
)
from trading_assets.core.symbols import BENCHMARK_SYMBOLS

_SYMBOLS_PER_CHUNK = 8  # work unit of the parallel per-symbol pass


def compute_indicators(
    prices: pd.DataFrame, *, benchmarks: Iterable[str] = BENCHMARK_SYMBOLS
) -> pd.DataFrame:
    """Indicators for every (symbol, date) row of a long OHLCV frame.

    Returns ``symbol, date`` + INDICATOR_COLUMNS, one row per input row, sorted by (symbol, date),
    with a RangeIndex. Float columns are float64 (NaN during warm-up), ``hh_ll_20`` is object
    ('HH', 'LL' or None), ``rs_rating`` is nullable Int64. ``benchmarks`` (default
    BENCHMARK_SYMBOLS) are left out of the rs_rating ranking and get a null rs_rating.

    Raises IndicatorInputError (a ValueError) for a missing column, a null symbol or date or a
    non-numeric price, and DuplicateSessionError when a (symbol, date) appears twice.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in prices.columns]
    if missing:
        raise IndicatorInputError(
            f"price frame is missing column(s) {missing}; compute_indicators needs "
            f"{list(REQUIRED_COLUMNS)}, got {[str(c) for c in prices.columns]}"
        )
    n = len(prices)
    days = _session_days(prices["date"])
    order, bounds, symbol_labels = _sort_plan(prices["symbol"], days)

    high, low, close, volume = (
        _float_column(prices, c, order) for c in ("high", "low", "close", "volume")
    )
    if order is not None:
        days = days[order]

    out = np.empty((_N_FLOAT, n))
    hh_ll_codes = np.empty(n, dtype=np.int8)
    # Threads take symbols in small chunks, so a core busy elsewhere does not hold up the pass.
    with numba.parallel_chunksize(_SYMBOLS_PER_CHUNK):
        _all_symbols(bounds, high, low, close, volume, out, hh_ll_codes)

    benchmark_set = {benchmarks} if isinstance(benchmarks, str) else set(benchmarks)
    is_stock = np.array([label not in benchmark_set for label in symbol_labels], dtype=np.bool_)
    ratings = np.empty(n, dtype=np.int64)
    rated = np.empty(n, dtype=np.bool_)
    _rs_rating(days, out[_RS_RAW], bounds, is_stock, ratings, rated)

    columns: dict[str, object] = {
        "symbol": _symbol_column(prices["symbol"], order, bounds, symbol_labels),
        "date": _reordered(prices["date"], order),
    }
    float_rows = {name: i for i, name in enumerate(_FLOAT_COLUMNS)}
    hh_ll_labels = np.array([None, HIGHER_HIGH, LOWER_LOW], dtype=object)
    for name in INDICATOR_COLUMNS:
        if name == "hh_ll_20":
            columns[name] = hh_ll_labels[hh_ll_codes]
        elif name == "rs_rating":
            columns[name] = pd.arrays.IntegerArray(ratings, ~rated)
        else:
            columns[name] = out[float_rows[name]]
    # copy=False keeps every float column a view of `out` (no consolidation copy of ~250 MB).
    return pd.DataFrame(columns, copy=False)


def continue_obv(window: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Rebase the OBV of an indicator frame computed on a truncated history onto stored OBV.

    OBV is a running sum from each symbol's first session, so compute_indicators on the last
    INDICATOR_LOOKBACK_SESSIONS + k sessions gets every other column right but starts OBV at the
    window's first volume. Inside the window the error is one constant per symbol (both sums add
    the same daily +-volume), so one stored full-history value fixes it:

        obv_full[t] = obv_window[t] - obv_window[p] + obv_stored[p]

    where p is, per symbol, the latest date with a non-null obv in ``previous`` (columns symbol,
    date, obv: stored indicator rows from before the new sessions). Returns a copy of ``window``
    with obv rebased for every symbol that has such a row. Symbols without one keep the window's OBV:
    right for a listing whose whole history is inside the window and for a symbol without volume
    (^VIX, obv null), wrong for a symbol that joins the store with older history - backfill those.
    Raises IndicatorInputError when a symbol's anchor date p is not among its window rows.
    """
    for frame, name in ((window, "window"), (previous, "previous")):
        missing = [c for c in ("symbol", "date", "obv") if c not in frame.columns]
        if missing:
            raise IndicatorInputError(f"continue_obv: {name} is missing column(s) {missing}")
    out = window.copy()
    stored = previous.loc[previous["obv"].notna(), ["symbol", "date", "obv"]]
    stored = stored[stored["symbol"].isin(window["symbol"].unique())]
    if stored.empty:
        return out
    anchors = stored.sort_values(["symbol", "date"]).groupby("symbol", sort=False).tail(1)
    matched = anchors.merge(window[["symbol", "date", "obv"]], on=["symbol", "date"], how="left",
                            suffixes=("_stored", "_window"))  # fmt: skip
    lost = matched[matched["obv_window"].isna()]
    if not lost.empty:
        shown = ", ".join(
            f"{s} {d}" for s, d in lost[["symbol", "date"]].head(5).itertuples(index=False)
        )
        raise IndicatorInputError(
            f"continue_obv: {len(lost)} symbol(s) have no window OBV on their last stored session "
            f"({shown}); the window must overlap the stored history by at least one session"
        )
    offsets = pd.Series(
        (matched["obv_stored"] - matched["obv_window"]).to_numpy(), index=matched["symbol"]
    )
    shift = out["symbol"].map(offsets).to_numpy(dtype=np.float64, na_value=np.nan)
    rebase = ~np.isnan(shift)
    obv = out["obv"].to_numpy(dtype=np.float64, copy=True)
    obv[rebase] += shift[rebase]
    out["obv"] = obv
    return out
