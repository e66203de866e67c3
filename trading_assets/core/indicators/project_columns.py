"""The project's own columns (not in TA-Lib): ema_slope_20, rs_raw, atr_pct_rank_252, hh_ll_20,
high_52w_pct/low_52w_pct, and the cross-sectional rs_rating sweep over all symbols.
"""

from __future__ import annotations

import numba
import numpy as np

from trading_assets.core.indicators.constants import (
    _HH_CODE,
    _LL_CODE,
    _NAN,
    RS_HORIZONS,
    RS_RATING_MAX,
    RS_WEIGHTS,
)
from trading_assets.core.indicators.talib_kernels import _ema, _fill_nan, _rolling_max, _rolling_min

_RATING_SPANS = 8  # date spans rated in parallel (each costs one unsorted start)

# =====================================================================================================
# Indicators of this project (not in TA-Lib).
# =====================================================================================================


@numba.njit(cache=True)
def _ema_slope(x, period, sessions, out):
    """ema_slope_20: the `sessions`-session fractional change of the TA-Lib-seeded EMA(period),
    ema[t] / ema[t - sessions] - 1 (0.01 = +1 %). First value at row period - 1 + sessions."""
    n = x.shape[0]
    ema = np.empty(n)
    _ema(x, period, period - 1, ema)
    first = period - 1 + sessions
    _fill_nan(out, first)
    for i in range(first, n):
        out[i] = ema[i] / ema[i - sessions] - 1.0


@numba.njit(cache=True)
def _rs_raw(x, out):
    """rs_raw = sum of RS_WEIGHTS[k] * r_N(k), N = RS_HORIZONS[k], r_N = close[t] / close[t-N] - 1.
    First value at row 252."""
    n = x.shape[0]
    h0, h1, h2, h3 = RS_HORIZONS
    w0, w1, w2, w3 = RS_WEIGHTS
    _fill_nan(out, h3)
    for i in range(h3, n):
        out[i] = (
            w0 * (x[i] / x[i - h0] - 1.0)
            + w1 * (x[i] / x[i - h1] - 1.0)
            + w2 * (x[i] / x[i - h2] - 1.0)
            + w3 * (x[i] / x[i - h3] - 1.0)
        )


@numba.njit(cache=True)
def _atr_pct_rank(atr, first_atr, window, out):
    """atr_pct_rank_252 = 100 * (number of the last `window` ATR values, today's included, that are
    <= today's) / window. 100 means the highest ATR of the year; the lowest possible value is
    100/window (today counts itself). NaN until `window` ATR values exist (row first_atr + 251)."""
    n = atr.shape[0]
    first = first_atr + window - 1
    _fill_nan(out, first)
    for i in range(first, n):
        today = atr[i]
        past = atr[i - window + 1 : i + 1]
        count = 0
        for j in range(window):  # vectorises: 252 compares per row is ~10 ns
            if past[j] <= today:
                count += 1
        out[i] = 100.0 * count / window


@numba.njit(cache=True)
def _hh_ll(high, low, close, sessions, codes):
    """hh_ll_20: HH when today's high is the highest high of the last `sessions` sessions (today
    included; equal to the earlier high counts), LL when today's low is the lowest low; null
    otherwise and for the first sessions-1 rows. A bar that does both (an outside bar spanning the
    whole range) is labelled by where it closed: HH at or above its midpoint, else LL."""
    n = high.shape[0]
    for i in range(min(sessions - 1, n)):
        codes[i] = 0
    if n < sessions:
        return
    highest = np.empty(n)
    lowest = np.empty(n)
    _rolling_max(high, sessions, highest)
    _rolling_min(low, sessions, lowest)
    for i in range(sessions - 1, n):
        is_high = high[i] >= highest[i]
        is_low = low[i] <= lowest[i]
        if is_high and is_low:
            codes[i] = _HH_CODE if close[i] >= 0.5 * (high[i] + low[i]) else _LL_CODE
        elif is_high:
            codes[i] = _HH_CODE
        elif is_low:
            codes[i] = _LL_CODE
        else:
            codes[i] = 0


@numba.njit(cache=True)
def _week52(high, low, close, window, high_out, low_out):
    """high_52w_pct = close / max(high over `window` sessions) - 1, low_52w_pct = close / min(low)
    - 1; windows include today. NaN for the first window-1 rows (and if the extreme is not > 0)."""
    _rolling_max(high, window, high_out)
    _rolling_min(low, window, low_out)
    for i in range(window - 1, close.shape[0]):
        hi = high_out[i]
        lo = low_out[i]
        high_out[i] = close[i] / hi - 1.0 if hi > 0.0 else _NAN
        low_out[i] = close[i] / lo - 1.0 if lo > 0.0 else _NAN


# =====================================================================================================
# rs_rating: one rank per session across the stocks.
# =====================================================================================================


@numba.njit(cache=True)
def _rate_sessions(days, rs_raw, bounds, is_stock, first_day, last_day, ratings, valid):
    """rs_rating for the sessions first_day..last_day (days since epoch, inclusive); see
    _rs_rating. The sessions are swept in date order with one cursor per stock (its rows are read
    front to back), and each session's values are sorted by insertion starting from the previous
    session's order: rs_raw moves little in a day, so that order is nearly sorted (~7 moves per
    stock per day on the shared data) and a session costs O(stocks), not a fresh sort."""
    n_symbols = bounds.shape[0] - 1
    cursor = np.empty(n_symbols, dtype=np.int64)  # the stock's next row on or after the sweep's day
    for k in range(n_symbols):
        cursor[k] = bounds[k] + np.searchsorted(days[bounds[k] : bounds[k + 1]], first_day)
    order = np.empty(n_symbols, dtype=np.int64)  # previous session's stocks, ascending rs_raw
    n_order = 0
    today_value = np.empty(n_symbols)
    today_row = np.empty(n_symbols, dtype=np.int64)
    taken = np.zeros(n_symbols, dtype=np.bool_)
    symbols = np.empty(n_symbols, dtype=np.int64)
    values = np.empty(n_symbols)
    for day in range(first_day, last_day + 1):
        n = 0
        for k in range(n_symbols):
            i = cursor[k]
            today_value[k] = _NAN
            if i < bounds[k + 1] and days[i] == day:
                cursor[k] = i + 1
                if is_stock[k] and not np.isnan(rs_raw[i]):
                    today_value[k] = rs_raw[i]
                    today_row[k] = i
                    n += 1
        if n == 0:
            continue  # no session, or nothing to rate yet
        n = 0
        for t in range(n_order):  # yesterday's order first ...
            k = order[t]
            if not np.isnan(today_value[k]):
                symbols[n] = k
                values[n] = today_value[k]
                taken[k] = True
                n += 1
        for k in range(n_symbols):  # ... then stocks that had no value yesterday
            if taken[k]:
                taken[k] = False
            elif not np.isnan(today_value[k]):
                symbols[n] = k
                values[n] = today_value[k]
                n += 1
        for j in range(1, n):  # insertion sort of a nearly sorted row
            k = symbols[j]
            x = values[j]
            i = j - 1
            while i >= 0 and values[i] > x:
                values[i + 1] = values[i]
                symbols[i + 1] = symbols[i]
                i -= 1
            values[i + 1] = x
            symbols[i + 1] = k
        rank_min = 1
        for j in range(n):
            if j > 0 and values[j] != values[j - 1]:
                rank_min = j + 1  # ties share the lowest rank
            row = today_row[symbols[j]]
            ratings[row] = 1 + (RS_RATING_MAX * (rank_min - 1)) // n
            valid[row] = True
        order[:n] = symbols[:n]
        n_order = n


@numba.njit(cache=True, parallel=True)
def _rs_rating(days, rs_raw, bounds, is_stock, ratings, valid):
    """rs_rating = 1 + floor(99 * (rank_min - 1) / n) per date over the stocks (is_stock) with a
    valid rs_raw that date: rank_min is the 1-based ascending rank with ties sharing the lowest rank
    (pandas rank(method='min')), n their count. The date range is cut into spans rated in
    parallel; each span starts its sweep from an empty order."""
    ratings[:] = 0
    valid[:] = False
    if rs_raw.shape[0] == 0:
        return
    first_day = days.min()
    n_days = days.max() - first_day + 1
    n_spans = min(_RATING_SPANS, n_days)
    for s in numba.prange(n_spans):
        start = first_day + n_days * s // n_spans
        stop = first_day + n_days * (s + 1) // n_spans - 1
        _rate_sessions(days, rs_raw, bounds, is_stock, start, stop, ratings, valid)
