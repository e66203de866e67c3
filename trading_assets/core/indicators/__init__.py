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
multiply-adds). The project's own columns (zscore_20 ... rs_rating) are defined where they are computed
(project_columns.py; zscore_20 beside Bollinger in talib_kernels.py).

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

Incremental updates: INDICATOR_LOOKBACK_SESSIONS (constants.py) and continue_obv (api.py).

Layout of this package:

- api.py: compute_indicators and continue_obv, the public entry points;
- constants.py: the periods, INDICATOR_LOOKBACK_SESSIONS, the output columns and the kernels' row layout;
- talib_kernels.py: the TA-Lib-identical numba kernels of one symbol;
- project_columns.py: this project's columns and the cross-sectional rs_rating sweep;
- per_symbol.py: one symbol by input group (the NaN rule above), then all symbols in parallel;
- inputs.py: input errors, session days, the (symbol, date) sort plan and column extraction.

numba caches each kernel beside its file (cache=True) and checks only that file for changes: a kernel
compiled into a caller in another file (every kernel is, into per_symbol.py) and the constants in
constants.py are not re-checked. After editing a kernel or a constant, delete this package's
``__pycache__/*.nbi`` and ``*.nbc`` (or the cache under NUMBA_CACHE_DIR) before trusting a test run.
"""

from __future__ import annotations

from trading_assets.core.indicators.api import compute_indicators, continue_obv
from trading_assets.core.indicators.constants import (
    ATR_PERIOD,
    ATR_RANK_SESSIONS,
    BOLLINGER_PERIOD,
    BOLLINGER_STDDEVS,
    EMA_FAST_PERIOD,
    EMA_SLOPE_PERIOD,
    EMA_SLOPE_SESSIONS,
    EMA_SLOW_PERIOD,
    HH_LL_SESSIONS,
    HIGHER_HIGH,
    INDICATOR_COLUMNS,
    INDICATOR_LOOKBACK_SESSIONS,
    LOWER_LOW,
    MACD_FAST_PERIOD,
    MACD_SIGNAL_PERIOD,
    MACD_SLOW_PERIOD,
    OUTPUT_COLUMNS,
    REQUIRED_COLUMNS,
    RS_HORIZONS,
    RS_RATING_MAX,
    RS_WEIGHTS,
    RSI_PERIOD,
    SMA_PERIODS,
    STOCH_FASTK_PERIOD,
    STOCH_SLOWD_PERIOD,
    STOCH_SLOWK_PERIOD,
    VOLUME_AVG_SESSIONS,
    WEEK52_SESSIONS,
)
from trading_assets.core.indicators.inputs import DuplicateSessionError, IndicatorInputError

__all__ = [
    "ATR_PERIOD",
    "ATR_RANK_SESSIONS",
    "BOLLINGER_PERIOD",
    "BOLLINGER_STDDEVS",
    "DuplicateSessionError",
    "EMA_FAST_PERIOD",
    "EMA_SLOPE_PERIOD",
    "EMA_SLOPE_SESSIONS",
    "EMA_SLOW_PERIOD",
    "HH_LL_SESSIONS",
    "HIGHER_HIGH",
    "INDICATOR_COLUMNS",
    "INDICATOR_LOOKBACK_SESSIONS",
    "IndicatorInputError",
    "LOWER_LOW",
    "MACD_FAST_PERIOD",
    "MACD_SIGNAL_PERIOD",
    "MACD_SLOW_PERIOD",
    "OUTPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "RSI_PERIOD",
    "RS_HORIZONS",
    "RS_RATING_MAX",
    "RS_WEIGHTS",
    "SMA_PERIODS",
    "STOCH_FASTK_PERIOD",
    "STOCH_SLOWD_PERIOD",
    "STOCH_SLOWK_PERIOD",
    "VOLUME_AVG_SESSIONS",
    "WEEK52_SESSIONS",
    "compute_indicators",
    "continue_obv",
]
