"""Daily technical indicators per symbol, and the cross-sectional relative-strength rating.

``compute_indicators(prices)`` takes the long OHLCV table (``symbol, date, high, low, close,
volume``; ``open`` and any other column is ignored, rows in any order) and returns one row per input
row, sorted by (symbol, date), with ``symbol``, ``date`` and INDICATOR_COLUMNS.

The TA-Lib indicators (sma_*, ema_*, rsi_14, macd*, bollinger_*, atr_14, obv, stoch_*) equal TA-Lib
0.8 (``talib.SMA/EMA/RSI/MACD/BBANDS/ATR/OBV/STOCH``) called on each symbol's rows sorted by date,
including TA-Lib's warm-up (the rows before its lookback are NaN) and its seeding:

- SMA: mean of the last n closes, first value at row n-1.
- EMA: seeded with the SMA of the first n closes (TA_INT_EMA, "classic" compatibility), then
  ``ema = (close - ema) * k + ema`` with k = 2 / (n + 1); first value at row n-1.
- RSI: Wilder. Average gain/loss seeded with the plain mean of the first n changes, then
  ``avg = (avg * (n - 1) + today) * (1 / n)``; first value at row n. No move at all reads 0.
- MACD(12, 26, 9): TA_INT_MACD starts BOTH EMAs at row 25 (slow - 1): the slow EMA is seeded with
  the SMA of rows 0..25, the fast EMA with the SMA of the 12 closes ending at row 25 (not rows 0..11
  as a stand-alone EMA 12 is). The signal EMA 9 is seeded with the SMA of macd rows 25..33, so
  macd, macd_signal and macd_hist all start at row 33.
- BBANDS(20, 2, 2, SMA): middle = SMA 20, bands = middle +- 2 population standard deviations.
- ATR: Wilder. Seeded with the mean true range of rows 1..14 (row 0 has no previous close), first
  value at row 14, then ``atr = (atr * 13 + tr) / 14``.
- OBV: starts at volume[0] on row 0 (TA_OBV), then +-volume when the close rises/falls.
- STOCH(14, 3 SMA, 3 SMA): raw %K over the 14-session high/low range (0 on a flat range), slow %K =
  SMA 3 of raw %K, slow %D = SMA 3 of slow %K; TA-Lib starts BOTH outputs at row 17.

Checked on all 506 symbols of the shared data: identical NaN masks; SMA, RSI, OBV and STOCH are
bit-identical, the others within 2 % of the rtol=1e-9/atol=1e-8 budget (TA-Lib 0.8.1 uses fused
multiply-adds). The project's own columns (zscore_20 ... rs_rating) are defined where they are computed.

Missing values (NaN). TA-Lib's Python wrapper skips leading NaNs (it starts at the first row where
every input is present) but does nothing sensible with a NaN later on: probed on TA-Lib 0.8.1, one
NaN close turns SMA/EMA/BBANDS/MACD NaN for the rest of the series, turns RSI into a constant 0,
leaves OBV unchanged that day, and STOCH silently ignores a NaN high. Here the rule is one and
explicit: **each indicator is computed on the symbol's sessions where all of its inputs are present,
as if the others did not exist; a session with a missing input gets NaN (null) for that indicator.**
With only leading NaNs this is exactly TA-Lib's behaviour; with a NaN inside the series it equals
TA-Lib called on the rows without NaN (that is what the tests check). The inputs are:

- close: sma_*, ema_*, rsi_14, macd*, bollinger_*, zscore_20, ema_slope_20, rs_raw
- high, low, close: atr_14, stoch_*, atr_pct_rank_252, hh_ll_20, high_52w_pct, low_52w_pct
- close, volume: obv (so ^VIX, whose volume is null, has a null obv)
- volume: vol_avg_50

Symbols are computed independently: a symbol's NaNs or short history never touch another symbol's
values. rs_rating is the one cross-sectional column; it ranks only the stocks with a valid rs_raw on
that date.

Incremental updates: INDICATOR_LOOKBACK_SESSIONS and continue_obv (bottom of this module).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numba
import numpy as np
import pandas as pd
import pyarrow as pa

from trading_assets.core.prices import PriceDataError
from trading_assets.core.symbols import BENCHMARK_SYMBOLS

# --- Parameters (the classic settings; TA-Lib's defaults except SMA 50/200 and BBANDS 20) ----------
SMA_PERIODS: tuple[int, int, int] = (20, 50, 200)
EMA_FAST_PERIOD = 12
EMA_SLOW_PERIOD = 26
RSI_PERIOD = 14
MACD_FAST_PERIOD = 12
MACD_SLOW_PERIOD = 26
MACD_SIGNAL_PERIOD = 9
BOLLINGER_PERIOD = 20
BOLLINGER_STDDEVS = 2.0
ATR_PERIOD = 14
STOCH_FASTK_PERIOD = 14
STOCH_SLOWK_PERIOD = 3
STOCH_SLOWD_PERIOD = 3
ATR_RANK_SESSIONS = 252  # one trading year
EMA_SLOPE_PERIOD = 20
EMA_SLOPE_SESSIONS = 5  # one trading week
HH_LL_SESSIONS = 20
WEEK52_SESSIONS = 252
VOLUME_AVG_SESSIONS = 50
# rs_raw = 0.4 r63 + 0.2 r126 + 0.2 r189 + 0.2 r252: IBD-style relative strength, the latest quarter
# weighted double. r_N is the N-session close-to-close return.
RS_HORIZONS: tuple[int, int, int, int] = (63, 126, 189, 252)
RS_WEIGHTS: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)
RS_RATING_MAX = 99  # rs_rating = 1 + floor(99 * (rank_min - 1) / n): 1..99

# hh_ll_20 labels.
HIGHER_HIGH = "HH"
LOWER_LOW = "LL"

# TA-Lib's relative dead-zone for "is this spread zero" (TA_EPSILON, TA_IS_ZERO_SCALED, ta_utility.h):
# a 14-session high-low range (STOCH) or a 20-session sigma (Bollinger) within 1e-14 of the price
# level is flat.
_TA_EPSILON = 1e-14

# --- Incremental recomputation --------------------------------------------------------------------
# Sessions of history to recompute in front of the new sessions so that the result equals a full
# backfill. Two parts:
#
# 1. 252 sessions: the longest window any column reads (atr_pct_rank_252 ranks the last 252 ATR
#    values, high_52w_pct/low_52w_pct look at 252 highs/lows, rs_raw at the close 252 sessions ago).
# 2. 504 sessions (two trading years) for the recursive indicators to forget where they started.
#    The difference between a window-seeded and the full-history value (the seed error e0) shrinks
#    each session by the recursion's factor (1 - alpha); the slowest are:
#      Wilder RSI 14 and ATR 14: 13/14 -> (13/14)**504 = 6e-17
#      EMA 26 (k = 2/27):        25/27 -> (25/27)**504 = 1.4e-17
#      MACD: its slow EMA is the EMA 26; the signal EMA 9 (factor 0.8) of the MACD line carries
#      that error with a gain of at most alpha9 / (alpha9 - alpha26) = 3.
#    Bounds on e0: for EMA/MACD/ATR a price or true-range difference, < 1e4 (NVR trades ~ 8,000),
#    so < 1e4 * 3 * 1.4e-17 = 4e-13. For RSI = 100 G / (G + L) the error is <= 100 (|dG| + |dL|)
#    / (G + L); with seed-era moves up to 1,000x today's, 100 * 1e3 * 6e-17 = 6e-12. The oldest
#    ATR inside atr_pct_rank_252's window still had 504 - 14 = 490 sessions of decay. All of this
#    is < 1e-9 with a 1,000x margin.
#
# 756 = 3 * 252. OBV is a running sum and never converges: continue_obv rebases it instead.
# Measured (trading_assets_tests/test_indicators.py, real data): EMA/RSI/ATR/MACD come out
# bit-identical; running-sum columns (SMA, Bollinger, STOCH) differ by <= 6e-13 from rounding.
INDICATOR_LOOKBACK_SESSIONS = 756

# --- Output columns ----------------------------------------------------------------------------------
# Float columns, in the groups the kernels fill (a group shares the inputs that must be present).
_CLOSE_COLUMNS: tuple[str, ...] = (
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "rsi_14",
    "macd", "macd_signal", "macd_hist",
    "bollinger_upper", "bollinger_middle", "bollinger_lower",
    "zscore_20", "ema_slope_20", "rs_raw",
)  # fmt: skip
_RANGE_COLUMNS: tuple[str, ...] = (
    "atr_14", "stoch_k", "stoch_d", "atr_pct_rank_252", "high_52w_pct", "low_52w_pct",
)  # fmt: skip
_OBV_COLUMNS: tuple[str, ...] = ("obv",)
_VOLUME_COLUMNS: tuple[str, ...] = ("vol_avg_50",)
_FLOAT_COLUMNS = _CLOSE_COLUMNS + _RANGE_COLUMNS + _OBV_COLUMNS + _VOLUME_COLUMNS

INDICATOR_COLUMNS: tuple[str, ...] = (
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "rsi_14",
    "macd", "macd_signal", "macd_hist",
    "bollinger_upper", "bollinger_middle", "bollinger_lower",
    "atr_14", "obv", "stoch_k", "stoch_d",
    "zscore_20", "atr_pct_rank_252", "ema_slope_20", "hh_ll_20",
    "high_52w_pct", "low_52w_pct", "vol_avg_50", "rs_raw", "rs_rating",
)  # fmt: skip
OUTPUT_COLUMNS: tuple[str, ...] = ("symbol", "date", *INDICATOR_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = ("symbol", "date", "high", "low", "close", "volume")

# Row numbers in the kernels' 2-D output (numba reads these globals as compile-time constants).
_SMA20, _SMA50, _SMA200, _EMA12, _EMA26, _RSI = 0, 1, 2, 3, 4, 5
_MACD, _MACD_SIGNAL, _MACD_HIST = 6, 7, 8
_BB_UPPER, _BB_MIDDLE, _BB_LOWER = 9, 10, 11
_ZSCORE, _EMA_SLOPE, _RS_RAW = 12, 13, 14
_ATR, _STOCH_K, _STOCH_D, _ATR_RANK, _HIGH52, _LOW52 = 0, 1, 2, 3, 4, 5  # rows of the range group
_N_CLOSE = len(_CLOSE_COLUMNS)
_N_RANGE = len(_RANGE_COLUMNS)
_RANGE0 = _N_CLOSE  # first row of each group in the full output
_OBV_ROW = _RANGE0 + _N_RANGE
_VOLUME_ROW = _OBV_ROW + 1
_N_FLOAT = len(_FLOAT_COLUMNS)
# hh_ll_20 is computed as int8 codes: 0 = null, 1 = HH, 2 = LL.
_HH_CODE, _LL_CODE = 1, 2

_NAN = np.nan
_SYMBOLS_PER_CHUNK = 8  # work unit of the parallel per-symbol pass
_RATING_SPANS = 8  # date spans rated in parallel (each costs one unsorted start)
_MAX_COUNTING_SORT_DAYS = 1_000_000  # ~2,700 years of calendar days: one int64 count per day


class IndicatorInputError(PriceDataError):
    """The price frame cannot be turned into indicators: a missing column, a null symbol or date,
    a non-numeric price."""


class DuplicateSessionError(IndicatorInputError):
    """The same (symbol, date) appears more than once: indicators over a doubled day are meaningless."""


# =====================================================================================================
# TA-Lib indicators for one symbol. Inputs hold no NaN (the caller leaves those sessions out, see the
# module docstring). Each function writes every element of its output: NaN through the warm-up,
# then values. Outputs are contiguous 1-D slices so numba can vectorise.
# =====================================================================================================


@numba.njit(cache=True)
def _fill_nan(out, stop):
    for i in range(min(stop, out.shape[0])):
        out[i] = _NAN


@numba.njit(cache=True)
def _sma(x, period, out):
    """TA_INT_SMA: running total, first value at row period-1."""
    n = x.shape[0]
    _fill_nan(out, period - 1)
    if n < period:
        return
    total = 0.0
    for i in range(period - 1):
        total += x[i]
    for i in range(period - 1, n):
        total += x[i]
        out[i] = total / period
        total -= x[i - period + 1]


@numba.njit(cache=True)
def _ema(x, period, first, out):
    """TA_INT_EMA (classic compatibility). The first value, at row ``first``, is the SMA of the
    ``period`` values ending there; then ema = (x - ema) * k + ema, k = 2 / (period + 1).
    A stand-alone EMA has first = period - 1; MACD starts its fast EMA later (see _macd)."""
    n = x.shape[0]
    _fill_nan(out, first)
    if n <= first:
        return
    k = 2.0 / (period + 1)
    total = 0.0
    for i in range(first - period + 1, first + 1):
        total += x[i]
    ema = total / period
    out[first] = ema
    for i in range(first + 1, n):
        ema = (x[i] - ema) * k + ema
        out[i] = ema


@numba.njit(cache=True)
def _rsi(x, period, out):
    """TA_RSI, Wilder smoothing: gains and losses of the first `period` changes averaged, then
    avg = (avg * (period - 1) + today) * (1 / period), in TA-Lib 0.8.1's operation order (its #410:
    hoisted 1/period, branch-free gain/loss split), which makes this bit-identical to talib.RSI.
    First value at row `period`. No move at all (average gain + loss == 0) reads 0, as TA-Lib."""
    n = x.shape[0]
    _fill_nan(out, period)
    if n <= period:
        return
    inv_period = 1.0 / period
    gain = 0.0
    loss = 0.0
    for i in range(1, n):
        change = x[i] - x[i - 1]
        up = change if change > 0.0 else 0.0
        if i > period:
            gain *= period - 1
            loss *= period - 1
        gain += up
        loss += up - change  # = -change on a down day, exactly 0 on an up day
        if i >= period:
            gain *= inv_period
            loss *= inv_period
            total = gain + loss
            out[i] = 100.0 * (gain / total) if total > 0.0 else 0.0


@numba.njit(cache=True)
def _macd(x, fast, slow, signal, line_out, signal_out, hist_out):
    """TA_INT_MACD. Both EMAs start at row slow-1 (TA-Lib runs them from the same start index): the
    slow one seeded with the SMA of rows 0..slow-1, the fast one with the SMA of the `fast` closes
    ending at row slow-1. The signal EMA is seeded with the SMA of the first `signal` MACD values,
    so all three outputs start at row slow + signal - 2 (33 for 12/26/9)."""
    n = x.shape[0]
    first_line = slow - 1
    first_out = first_line + signal - 1
    _fill_nan(line_out, first_out)
    _fill_nan(signal_out, first_out)
    _fill_nan(hist_out, first_out)
    if n <= first_out:
        return
    k_fast = 2.0 / (fast + 1)
    k_slow = 2.0 / (slow + 1)
    k_signal = 2.0 / (signal + 1)
    total = 0.0
    for i in range(0, slow):
        total += x[i]
    ema_slow = total / slow
    total = 0.0
    for i in range(slow - fast, slow):
        total += x[i]
    ema_fast = total / fast
    signal_total = ema_fast - ema_slow
    for i in range(first_line + 1, first_out + 1):
        ema_slow = (x[i] - ema_slow) * k_slow + ema_slow
        ema_fast = (x[i] - ema_fast) * k_fast + ema_fast
        signal_total += ema_fast - ema_slow
    line = ema_fast - ema_slow
    ema_signal = signal_total / signal
    line_out[first_out] = line
    signal_out[first_out] = ema_signal
    hist_out[first_out] = line - ema_signal
    for i in range(first_out + 1, n):
        ema_slow = (x[i] - ema_slow) * k_slow + ema_slow
        ema_fast = (x[i] - ema_fast) * k_fast + ema_fast
        line = ema_fast - ema_slow
        ema_signal = (line - ema_signal) * k_signal + ema_signal
        line_out[i] = line
        signal_out[i] = ema_signal
        hist_out[i] = line - ema_signal


@numba.njit(cache=True, fastmath={"reassoc"})
def _sum_sq_dev(window, center):
    """Sum of (x - center)**2. Reassociation lets LLVM vectorise; the order depends only on the
    window length, so the result depends only on the window's values."""
    total = 0.0
    for j in range(window.shape[0]):
        d = window[j] - center
        total += d * d
    return total


@numba.njit(cache=True)
def _bollinger_zscore(x, period, stddevs, middle, upper, lower, zscore):
    """BBANDS(period, stddevs, stddevs, SMA): bands = middle (the SMA, already in `middle`) +-
    stddevs * population sigma of the last `period` closes. sigma is taken around the SMA in one
    pass: TA-Lib 0.8 is accurate to ~1e-12 here, whereas a running sum of squares (TA-Lib <= 0.7)
    loses ~1e-7 to cancellation on $1,000+ prices and would depend on where the series starts.
    zscore_20 = (close - SMA) / the same sigma: how many sigmas the close sits from the middle band
    (+-2 on the bands). A flat window (sigma within TA_EPSILON of the price: only the rounding of the
    SMA is left) has sigma 0, so bands = middle and zscore is NaN rather than noise / noise."""
    n = x.shape[0]
    _fill_nan(upper, period - 1)
    _fill_nan(lower, period - 1)
    _fill_nan(zscore, period - 1)
    for i in range(period - 1, n):
        mean = middle[i]
        sigma = math.sqrt(_sum_sq_dev(x[i - period + 1 : i + 1], mean) / period)
        if sigma <= _TA_EPSILON * abs(mean):
            sigma = 0.0
        width = sigma * stddevs
        upper[i] = mean + width
        lower[i] = mean - width
        zscore[i] = (x[i] - mean) / sigma if sigma > 0.0 else _NAN


@numba.njit(cache=True)
def _atr(high, low, close, period, out):
    """TA_ATR, Wilder: true range from row 1 (max of high - low, |high - prev close|, |low - prev
    close|); first ATR at row `period` = mean TR of rows 1..period; then atr = (atr*(period-1) + tr)
    / period."""
    n = close.shape[0]
    _fill_nan(out, period)
    if n <= period:
        return
    total = 0.0
    atr = 0.0
    for i in range(1, n):
        tr = max(high[i] - low[i], abs(close[i - 1] - high[i]), abs(close[i - 1] - low[i]))
        if i < period:
            total += tr
        elif i == period:
            atr = (total + tr) / period
            out[i] = atr
        else:
            atr = (atr * (period - 1) + tr) / period
            out[i] = atr


@numba.njit(cache=True)
def _obv(close, volume, out):
    """TA_OBV: starts at volume[0] on row 0, then adds the volume on an up close and subtracts it
    on a down close (unchanged on a flat one)."""
    n = close.shape[0]
    if n == 0:
        return
    obv = volume[0]
    out[0] = obv
    for i in range(1, n):
        direction = (close[i] > close[i - 1]) - (close[i] < close[i - 1])
        obv += direction * volume[i]
        out[i] = obv


@numba.njit(cache=True)
def _rolling_max(x, window, out):
    """Max of x over the last `window` rows, today included; NaN for the first window-1 rows.
    van Herk / Gil-Werman: per block of `window` rows a suffix max (backwards) and a prefix max
    (forwards); a window spans at most two blocks. O(n) for any window, no branches to mispredict."""
    n = x.shape[0]
    _fill_nan(out, window - 1)
    if n < window:
        return
    suffix = np.empty(n)
    for start in range(0, n, window):
        stop = min(start + window, n)
        m = x[stop - 1]
        suffix[stop - 1] = m
        for i in range(stop - 2, start - 1, -1):
            m = max(m, x[i])
            suffix[i] = m
    for start in range(0, n, window):
        m = x[start]
        for i in range(start, min(start + window, n)):
            m = max(m, x[i])
            if i >= window - 1:
                out[i] = max(suffix[i - window + 1], m)


@numba.njit(cache=True)
def _rolling_min(x, window, out):
    """Min of x over the last `window` rows (negation is exact: min(x) = -max(-x))."""
    _rolling_max(-x, window, out)
    for i in range(window - 1, x.shape[0]):
        out[i] = -out[i]


@numba.njit(cache=True)
def _stoch(high, low, close, fastk, slowk, slowd, k_out, d_out):
    """TA_STOCH(fastk, slowk SMA, slowd SMA). Raw %K = (close - lowest low) / (highest high -
    lowest low) * 100 over `fastk` sessions, 0 on a flat range (TA_IS_ZERO_SCALED, ta_utility.h).
    Slow %K = SMA(slowk) of raw %K, slow %D = SMA(slowd) of slow %K. TA-Lib starts BOTH outputs
    where %D starts: row fastk + slowk + slowd - 3 (17)."""
    n = close.shape[0]
    first_raw = fastk - 1
    first_out = first_raw + slowk - 1 + slowd - 1
    _fill_nan(k_out, first_out)
    _fill_nan(d_out, first_out)
    if n <= first_out:
        return
    highest = np.empty(n)
    lowest = np.empty(n)
    _rolling_max(high, fastk, highest)
    _rolling_min(low, fastk, lowest)
    raw = np.empty(n - first_raw)
    for i in range(first_raw, n):
        span = highest[i] - lowest[i]
        flat = abs(span) <= _TA_EPSILON * (abs(highest[i]) + abs(lowest[i]))
        raw[i - first_raw] = 0.0 if flat else (close[i] - lowest[i]) / span * 100.0
    smooth_k = np.empty(raw.shape[0])
    _sma(raw, slowk, smooth_k)
    smooth_d = np.empty(raw.shape[0] - slowk + 1)
    _sma(smooth_k[slowk - 1 :], slowd, smooth_d)
    for i in range(first_out, n):
        k_out[i] = smooth_k[i - first_raw]
        d_out[i] = smooth_d[i - first_raw - slowk + 1]


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
# One symbol per input group, then all symbols. A group writes rows row0.. of `out`, columns
# s..s+len(inputs): the symbol's slice of the full output, or a dense scratch when sessions with
# missing inputs were left out (then scattered back with NaN in the gaps).
# =====================================================================================================


@numba.njit(cache=True)
def _close_group(close, out, row0, s):
    """Every column that reads only the close (rows follow _CLOSE_COLUMNS)."""
    e = s + close.shape[0]
    _sma(close, SMA_PERIODS[0], out[row0 + _SMA20][s:e])
    _sma(close, SMA_PERIODS[1], out[row0 + _SMA50][s:e])
    _sma(close, SMA_PERIODS[2], out[row0 + _SMA200][s:e])
    _ema(close, EMA_FAST_PERIOD, EMA_FAST_PERIOD - 1, out[row0 + _EMA12][s:e])
    _ema(close, EMA_SLOW_PERIOD, EMA_SLOW_PERIOD - 1, out[row0 + _EMA26][s:e])
    _rsi(close, RSI_PERIOD, out[row0 + _RSI][s:e])
    _macd(close, MACD_FAST_PERIOD, MACD_SLOW_PERIOD, MACD_SIGNAL_PERIOD,
          out[row0 + _MACD][s:e], out[row0 + _MACD_SIGNAL][s:e], out[row0 + _MACD_HIST][s:e])  # fmt: skip
    _sma(close, BOLLINGER_PERIOD, out[row0 + _BB_MIDDLE][s:e])
    _bollinger_zscore(close, BOLLINGER_PERIOD, BOLLINGER_STDDEVS, out[row0 + _BB_MIDDLE][s:e],
                      out[row0 + _BB_UPPER][s:e], out[row0 + _BB_LOWER][s:e],
                      out[row0 + _ZSCORE][s:e])  # fmt: skip
    _ema_slope(close, EMA_SLOPE_PERIOD, EMA_SLOPE_SESSIONS, out[row0 + _EMA_SLOPE][s:e])
    _rs_raw(close, out[row0 + _RS_RAW][s:e])


@numba.njit(cache=True)
def _range_group(high, low, close, out, row0, s, codes):
    """Every column that reads high, low and close (rows follow _RANGE_COLUMNS) and hh_ll_20."""
    e = s + close.shape[0]
    _atr(high, low, close, ATR_PERIOD, out[row0 + _ATR][s:e])
    _stoch(high, low, close, STOCH_FASTK_PERIOD, STOCH_SLOWK_PERIOD, STOCH_SLOWD_PERIOD,
           out[row0 + _STOCH_K][s:e], out[row0 + _STOCH_D][s:e])  # fmt: skip
    _atr_pct_rank(out[row0 + _ATR][s:e], ATR_PERIOD, ATR_RANK_SESSIONS, out[row0 + _ATR_RANK][s:e])
    _hh_ll(high, low, close, HH_LL_SESSIONS, codes[s:e])
    _week52(high, low, close, WEEK52_SESSIONS, out[row0 + _HIGH52][s:e], out[row0 + _LOW52][s:e])


@numba.njit(cache=True)
def _present_rows(a, b, c):
    """Indices where none of a, b, c is NaN (pass an array twice for fewer inputs)."""
    n = a.shape[0]
    keep = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        if not (np.isnan(a[i]) or np.isnan(b[i]) or np.isnan(c[i])):
            keep[m] = i
            m += 1
    return keep[:m]


@numba.njit(cache=True)
def _scatter(dense, rows, out, row0, s, e):
    """out[row0 + r, s + rows[j]] = dense[r, j]; NaN on the other rows of s..e."""
    for r in range(dense.shape[0]):
        target = out[row0 + r][s:e]
        target[:] = _NAN
        for j in range(rows.shape[0]):
            target[rows[j]] = dense[r, j]


@numba.njit(cache=True)
def _one_symbol(high, low, close, volume, out, codes, s, e):
    """All per-symbol columns for rows s..e (one symbol, sorted by date). Each input group runs on
    the sessions where its inputs are present (module docstring)."""
    n = e - s
    h, lo, c, v = high[s:e], low[s:e], close[s:e], volume[s:e]

    rows = _present_rows(c, c, c)
    if rows.shape[0] == n:
        _close_group(c, out, 0, s)
    else:
        dense = np.empty((_N_CLOSE, rows.shape[0]))
        _close_group(c[rows], dense, 0, 0)
        _scatter(dense, rows, out, 0, s, e)

    rows = _present_rows(h, lo, c)
    if rows.shape[0] == n:
        _range_group(h, lo, c, out, _RANGE0, s, codes)
    else:
        dense = np.empty((_N_RANGE, rows.shape[0]))
        dense_codes = np.empty(rows.shape[0], dtype=np.int8)
        _range_group(h[rows], lo[rows], c[rows], dense, 0, 0, dense_codes)
        _scatter(dense, rows, out, _RANGE0, s, e)
        codes[s:e] = 0
        for j in range(rows.shape[0]):
            codes[s + rows[j]] = dense_codes[j]

    rows = _present_rows(c, v, v)
    if rows.shape[0] == n:
        _obv(c, v, out[_OBV_ROW][s:e])
    else:
        dense = np.empty((1, rows.shape[0]))
        _obv(c[rows], v[rows], dense[0])
        _scatter(dense, rows, out, _OBV_ROW, s, e)

    # A running total of volumes is exact (integers far below 2**53), so vol_avg_50 does not drift.
    rows = _present_rows(v, v, v)
    if rows.shape[0] == n:
        _sma(v, VOLUME_AVG_SESSIONS, out[_VOLUME_ROW][s:e])
    else:
        dense = np.empty((1, rows.shape[0]))
        _sma(v[rows], VOLUME_AVG_SESSIONS, dense[0])
        _scatter(dense, rows, out, _VOLUME_ROW, s, e)


@numba.njit(cache=True, parallel=True)
def _all_symbols(bounds, high, low, close, volume, out, codes):
    """Symbols are independent: symbol k owns rows bounds[k]:bounds[k+1]."""
    for k in numba.prange(bounds.shape[0] - 1):
        _one_symbol(high, low, close, volume, out, codes, bounds[k], bounds[k + 1])


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


@numba.njit(cache=True)
def _symbol_day_order(codes, day_offsets, n_codes, span):
    """Row order by (symbol code, day): two stable counting sorts (LSD radix with the day as the
    low digit). O(rows + days + symbols), against ~150 ms for np.argsort on a million int64 keys."""
    n = codes.shape[0]
    by_day = np.empty(n, dtype=np.int64)
    slot = np.zeros(span + 1, dtype=np.int64)
    for i in range(n):
        slot[day_offsets[i] + 1] += 1
    slot = np.cumsum(slot)
    for i in range(n):
        d = day_offsets[i]
        by_day[slot[d]] = i
        slot[d] += 1
    order = np.empty(n, dtype=np.int64)
    slot = np.zeros(n_codes + 1, dtype=np.int64)
    for i in range(n):
        slot[codes[i] + 1] += 1
    slot = np.cumsum(slot)
    for j in range(n):
        i = by_day[j]
        c = codes[i]
        order[slot[c]] = i
        slot[c] += 1
    return order


# =====================================================================================================
# Public API
# =====================================================================================================


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


# =====================================================================================================
# Input plumbing: symbol codes, session days, sort order, float columns.
# =====================================================================================================


def _session_days(date: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (int64) of each session date: datetime64 (DuckDB hands DATE over as
    datetime64[us]), tz-aware timestamps (their local date), or datetime.date objects."""
    if isinstance(date.dtype, pd.DatetimeTZDtype):
        date = date.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(date.dtype):
        values = date.to_numpy()
    else:
        try:
            # pyarrow converts datetime.date objects ~20x faster than numpy, 2x faster than pandas.
            values = pa.array(date.to_numpy(dtype=object), type=pa.date32()).to_numpy(
                zero_copy_only=False
            )
        except (TypeError, ValueError, pa.ArrowException):
            try:
                values = pd.to_datetime(date, errors="raise").to_numpy()
            except (TypeError, ValueError) as exc:
                raise IndicatorInputError(
                    f"column 'date' has values that are not dates: {exc}"
                ) from exc
    days = values.astype("datetime64[D]")
    if np.isnat(days).any():
        raise IndicatorInputError("column 'date' has null values")
    return days.view(np.int64)


def _sort_plan(
    symbol: pd.Series, days: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """How to visit the rows by (symbol, date): the sort order (None when the input is sorted
    already), the row bounds of each symbol in that order (symbol k owns rows bounds[k]:bounds[k+1])
    and each symbol's label. Raises DuplicateSessionError on a repeated (symbol, date).

    pd.factorize hashes every row (~50 ms per million); the input is nearly always sorted already
    (normalize_prices and the DuckDB reads sort it), so compare neighbours, factorize one label per
    run of equal symbols, and only build per-row codes and sort when the runs are out of order.
    """
    n = days.shape[0]
    if n == 0:
        return None, np.zeros(1, dtype=np.int64), np.empty(0, dtype=object)
    values = symbol.to_numpy(dtype=object)
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(values[1:], values[:-1], out=new_run[1:])
    run_starts = np.flatnonzero(new_run)
    try:
        run_codes, labels = pd.factorize(values[run_starts], sort=True)
    except TypeError as exc:
        raise IndicatorInputError(
            f"column 'symbol' mixes types that cannot be sorted: {exc}"
        ) from exc
    if (run_codes < 0).any():
        raise IndicatorInputError("column 'symbol' has null values")
    labels = np.asarray(labels, dtype=object)
    if run_codes.shape[0] == labels.shape[0] and (np.diff(run_codes) > 0).all():
        step = np.diff(days)
        step[run_starts[1:] - 1] = 1  # a new symbol may start on any date
        if (step > 0).all():  # every symbol's dates strictly increase: sorted, no duplicates
            return None, np.append(run_starts, n).astype(np.int64), labels[run_codes]

    codes = np.repeat(run_codes.astype(np.int64), np.diff(np.append(run_starts, n)))
    first_day = days.min()
    span = int(days.max() - first_day) + 1
    key = codes * span + (days - first_day)
    if span <= _MAX_COUNTING_SORT_DAYS:
        order = _symbol_day_order(codes, days - first_day, labels.shape[0], span)
    else:  # dates spread over centuries: fall back to a comparison sort
        order = np.argsort(key, kind="stable")
    key = key[order]
    same = np.flatnonzero(key[1:] == key[:-1])
    if same.size:
        examples = [
            f"{labels[key[i] // span]} {np.datetime64(int(key[i] % span + first_day), 'D')}"
            for i in same[:5]
        ]
        raise DuplicateSessionError(
            f"{same.size} duplicated (symbol, date) row(s), e.g. {', '.join(examples)}; "
            "drop the duplicates (raw_prices keeps one row per symbol and session)"
        )
    sorted_codes = key // span
    starts = np.concatenate(([0], np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1))
    return order, np.append(starts, n).astype(np.int64), labels[sorted_codes[starts]]


def _float_column(prices: pd.DataFrame, name: str, order: np.ndarray | None) -> np.ndarray:
    try:
        values = prices[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise IndicatorInputError(f"column {name!r} has non-numeric values: {exc}") from exc
    values = values if order is None else values[order]
    return np.ascontiguousarray(values)


def _symbol_column(symbol: pd.Series, order: np.ndarray | None, bounds, labels) -> pd.Series:
    """The symbol column in sorted order. Plain object strings are rebuilt from one label per
    symbol (a sequential repeat) instead of a random-access take of a million Python objects."""
    if order is None or symbol.dtype != object:
        return _reordered(symbol, order)
    return pd.Series(np.repeat(labels, np.diff(bounds)), dtype=object, copy=False)


def _reordered(column: pd.Series, order: np.ndarray | None) -> pd.Series:
    """The column's values in sorted order, same dtype, RangeIndex. Passing an explicit dtype keeps
    pandas from scanning object columns to infer one (30 ms per million symbols)."""
    # numpy-backed columns as the bare ndarray: NumpyExtensionArray.to_numpy scans for NA.
    values = (
        column.array
        if isinstance(column.dtype, pd.api.extensions.ExtensionDtype)
        else column.to_numpy()
    )
    if order is not None:
        values = values.take(order)
    return pd.Series(values, dtype=column.dtype, copy=False)
