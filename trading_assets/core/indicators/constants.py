"""Parameters, the incremental look-back and the output layout of the indicators.

The periods are the classic settings; the kernels read them (and the row numbers below) as numba
compile-time constants.
"""

from __future__ import annotations

import numpy as np

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
