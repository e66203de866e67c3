"""The per-symbol pass: every column of one symbol by input group, then all symbols in parallel."""

from __future__ import annotations

import numba
import numpy as np

from trading_assets.core.indicators.constants import (
    _ATR,
    _ATR_RANK,
    _BB_LOWER,
    _BB_MIDDLE,
    _BB_UPPER,
    _EMA12,
    _EMA26,
    _EMA_SLOPE,
    _HIGH52,
    _LOW52,
    _MACD,
    _MACD_HIST,
    _MACD_SIGNAL,
    _N_CLOSE,
    _N_RANGE,
    _NAN,
    _OBV_ROW,
    _RANGE0,
    _RS_RAW,
    _RSI,
    _SMA20,
    _SMA50,
    _SMA200,
    _STOCH_D,
    _STOCH_K,
    _VOLUME_ROW,
    _ZSCORE,
    ATR_PERIOD,
    ATR_RANK_SESSIONS,
    BOLLINGER_PERIOD,
    BOLLINGER_STDDEVS,
    EMA_FAST_PERIOD,
    EMA_SLOPE_PERIOD,
    EMA_SLOPE_SESSIONS,
    EMA_SLOW_PERIOD,
    HH_LL_SESSIONS,
    MACD_FAST_PERIOD,
    MACD_SIGNAL_PERIOD,
    MACD_SLOW_PERIOD,
    RSI_PERIOD,
    SMA_PERIODS,
    STOCH_FASTK_PERIOD,
    STOCH_SLOWD_PERIOD,
    STOCH_SLOWK_PERIOD,
    VOLUME_AVG_SESSIONS,
    WEEK52_SESSIONS,
)
from trading_assets.core.indicators.project_columns import (
    _atr_pct_rank,
    _ema_slope,
    _hh_ll,
    _rs_raw,
    _week52,
)
from trading_assets.core.indicators.talib_kernels import (
    _atr,
    _bollinger_zscore,
    _ema,
    _macd,
    _obv,
    _rsi,
    _sma,
    _stoch,
)

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
