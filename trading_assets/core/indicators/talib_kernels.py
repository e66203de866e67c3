"""TA-Lib 0.8-identical numba kernels for one symbol: SMA, EMA, RSI, MACD, BBANDS (+ zscore_20),
ATR, OBV, STOCH, and the rolling max/min they share. The seeding and warm-up rules are in the package
docstring (trading_assets.core.indicators).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trading_assets.core.indicators.constants import _NAN

# TA-Lib's relative dead-zone for "is this spread zero" (TA_EPSILON, TA_IS_ZERO_SCALED, ta_utility.h):
# a 14-session high-low range (STOCH) or a 20-session sigma (Bollinger) within 1e-14 of the price
# level is flat.
_TA_EPSILON = 1e-14


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
