"""``run_backtest``: validate the inputs, prepare the bars once, dispatch to the strategy.

The sleeve strategies (ma_crossover, rsi_mean_reversion, stdev) run one independent sleeve per
symbol with ``equity / n_symbols`` each (n_symbols: distinct symbols in ``bars``); the portfolio's
equity is the sum of the sleeves, a sleeve holding its cash on the sessions before its first bar
and its last value after its last. watchlist_momentum shares one cash account and lives in
momentum.py (imported when asked for).

Side inputs a strategy does not read are ignored: ``market_environment`` and ``watchlist`` by the
sleeves, ``threshold_multipliers`` by all but stdev (it is still validated when given, so a bad
frame fails loudly whichever strategy is run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from trading_assets.core.backtest.bars import OHLC_COLUMNS, prepare_bars
from trading_assets.core.backtest.fills import bps_rate, check_equity
from trading_assets.core.backtest.ledger import (
    empty_result,
    equity_series,
    sum_sleeves,
    trades_frame,
)
from trading_assets.core.backtest.multipliers import multipliers_by_session, validate_multipliers
from trading_assets.core.backtest.params import (
    MaCrossoverParams,
    RsiMeanReversionParams,
    resolve_params,
)
from trading_assets.core.backtest.result import (
    DEFAULT_COMMISSION_BPS,
    DEFAULT_EQUITY,
    DEFAULT_SLIPPAGE_BPS,
    NOTIONAL_STOP_ATR,
    STRATEGIES,
    BacktestInputError,
    BacktestResult,
)
from trading_assets.core.backtest.sleeves import (
    crossover_signals,
    level_signals,
    run_signal_sleeves,
)
from trading_assets.core.backtest.stdev import STDEV_COLUMNS, run_stdev_sleeves
from trading_assets.core.backtest.veto import TradeVeto, vetoed_stdev_sleeves

WATCHLIST_MOMENTUM = "watchlist_momentum"


def run_backtest(
    bars: pd.DataFrame,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    *,
    equity: float = DEFAULT_EQUITY,
    commission_bps: float = DEFAULT_COMMISSION_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    market_environment: pd.DataFrame | None = None,
    watchlist: pd.DataFrame | None = None,
    threshold_multipliers: pd.DataFrame | None = None,
    trade_veto: TradeVeto | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` over ``bars`` (symbol, date, open, high, low, close, volume and
    compute_indicators' columns; rows in any order).

    ``params`` overrides the strategy's parameters by name (params.py). Costs are in basis points
    of the traded notional (commission, each side) and of the price (slippage, market orders).
    ``threshold_multipliers`` (stdev): per-session multipliers of its four z thresholds
    (multipliers.py; a session without a row uses 1.0). ``trade_veto`` (stdev, optional): asked
    about each signal before it becomes a trade, may veto it (veto.py).

    Raises BacktestInputError for an unknown strategy or parameter, a bad value, bars missing a
    column the strategy reads, a null symbol or date, a duplicated (symbol, date); MultiplierError
    (a BacktestInputError) for a bad multipliers frame. Empty bars give no trades and an empty
    equity series.
    """
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise BacktestInputError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    check_equity(equity)
    commission_rate = bps_rate(commission_bps, "commission_bps")
    slippage_rate = bps_rate(slippage_bps, "slippage_bps")
    if strategy == WATCHLIST_MOMENTUM:
        # Imported here: the momentum strategy is its own module with its own inputs.
        from trading_assets.core.backtest.momentum import run_watchlist_momentum

        return run_watchlist_momentum(
            bars,
            params,
            equity=equity,
            commission_bps=commission_bps,
            slippage_bps=slippage_bps,
            market_environment=market_environment,
            watchlist=watchlist,
        )
    resolved = resolve_params(strategy, params)
    multipliers = (
        None if threshold_multipliers is None else validate_multipliers(threshold_multipliers)
    )
    prepared = prepare_bars(bars, (*OHLC_COLUMNS, *_indicator_columns(resolved)))
    if prepared.n_rows == 0:
        return empty_result(strategy)
    start_cash = float(equity) / prepared.n_symbols
    costs = {
        "start_cash": start_cash,
        "commission_rate": commission_rate,
        "slippage_rate": slippage_rate,
    }
    if strategy == "stdev":
        by_session = multipliers_by_session(multipliers, prepared.sessions)
        if trade_veto is None:
            records, sleeve_equity = run_stdev_sleeves(prepared, resolved, by_session, **costs)
        else:
            records, sleeve_equity = vetoed_stdev_sleeves(
                prepared, resolved, by_session, trade_veto, **costs
            )
    else:
        if isinstance(resolved, MaCrossoverParams):
            signal = crossover_signals(
                prepared,
                prepared.column(resolved.fast_average),
                prepared.column(resolved.slow_average),
            )
        else:
            signal = level_signals(
                prepared,
                prepared.column("rsi_14"),
                resolved.rsi_entry_below,
                resolved.rsi_exit_above,
            )
        records, sleeve_equity = run_signal_sleeves(
            prepared, signal, notional_stop_atr=NOTIONAL_STOP_ATR, **costs
        )
    return BacktestResult(
        strategy=strategy,
        trades=trades_frame(strategy, prepared, records),
        equity=equity_series(prepared, sum_sleeves(prepared, sleeve_equity, start_cash)),
    )


def _indicator_columns(params: Any) -> tuple[str, ...]:
    """The bars columns (besides the keys and OHLC) a sleeve strategy reads."""
    if isinstance(params, MaCrossoverParams):
        return (params.fast_average, params.slow_average, "atr_14")
    if isinstance(params, RsiMeanReversionParams):
        return ("rsi_14", "atr_14")
    return STDEV_COLUMNS
