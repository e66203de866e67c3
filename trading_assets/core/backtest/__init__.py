"""The backtest engine: ``run_backtest(bars, strategy, params, ...)`` -> BacktestResult.

Layout of this package:

- result.py: TRADE_COLUMNS, BacktestResult, BacktestInputError, the defaults and the fill rules;
- engine.py: run_backtest, input validation and dispatch;
- params.py: each sleeve strategy's parameters as named constants, overridable by name;
- bars.py: prepare_bars, the bars as flat arrays sorted by (symbol, date), shared by every strategy;
- fills.py: the fill and cost rules as numba functions (slippage, commission, stop/target);
- ledger.py: kernel trade records -> the trades frame; sleeves -> the daily equity;
- sleeves.py: ma_crossover and rsi_mean_reversion (long-only signal sleeves);
- stdev.py: the STDEV tactic (MR and TC setups, long and short, stop and target);
- multipliers.py: the stdev thresholds' per-session multipliers and their validation;
- momentum.py: watchlist_momentum (one shared cash account).

numba caches each kernel beside its file (cache=True) and checks only that file for changes: after
editing a kernel another file's kernel calls (fills.py, ledger.py), delete this package's
``__pycache__/*.nbi`` and ``*.nbc`` before trusting a test run.
"""

from trading_assets.core.backtest.engine import run_backtest
from trading_assets.core.backtest.multipliers import (
    MultiplierError,
    default_multipliers,
    read_multipliers_csv,
    validate_multipliers,
)
from trading_assets.core.backtest.result import (
    STRATEGIES,
    TRADE_COLUMNS,
    BacktestInputError,
    BacktestResult,
)

__all__ = [
    "STRATEGIES",
    "TRADE_COLUMNS",
    "BacktestInputError",
    "BacktestResult",
    "MultiplierError",
    "default_multipliers",
    "read_multipliers_csv",
    "run_backtest",
    "validate_multipliers",
]
