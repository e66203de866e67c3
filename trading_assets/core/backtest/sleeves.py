"""The signal sleeves: ``ma_crossover`` and ``rsi_mean_reversion``, long only, one sleeve per symbol.

Each symbol trades its own sleeve of ``equity / n_symbols`` and never sees another symbol, so the
portfolio is the sum of the sleeves (ledger.sum_sleeves).

Signals are judged at a session's close on that symbol's own bar:

- ma_crossover: the state is ``fast > slow`` (sma_20 > sma_50 by default). An entry is the state
  turning true, an exit turning false, each against the last session where both averages were
  known (a session with a NaN average neither signals nor resets the state). The very first known
  state is not a cross.
- rsi_mean_reversion: entry when rsi_14 < 30, exit when rsi_14 > 70 (levels, not crosses: an entry
  signal while already long is moot, and so is an exit signal while flat).

Execution (result.py's rules, fills.py): a signal at the close of t becomes a market order at the
symbol's next tradable bar's open, slippage against the trader. A bar is tradable when its open,
high, low and close are all finite and positive; on any other bar (a gap) nothing happens: no
fill, no signal, the sleeve is marked at the last tradable close. An entry buys the whole shares
the sleeve's cash affords with commission (floor(cash / (fill x (1 + commission)))); none
affordable means no trade. The exit sells everything. A position open at the last bar is reported
open, marked at the last tradable close. R uses a notional stop of NOTIONAL_STOP_ATR x atr_14 of the
signal session (NaN when atr_14 was unknown).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trading_assets.core.backtest.bars import Bars
from trading_assets.core.backtest.fills import (
    EXIT_SIGNAL,
    OPEN,
    affordable_shares,
    commission,
    entry_fill,
    exit_fill,
)
from trading_assets.core.backtest.ledger import (
    SETUP_NONE,
    TradeRecords,
    allocate_records,
    compact_records,
)

ENTER, EXIT = 1, -1  # signal codes at a close (0: none)


def crossover_signals(bars: Bars, fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """Per row: ENTER where fast crosses above slow at the close, EXIT where below, else 0."""
    signal = np.zeros(bars.n_rows, dtype=np.int8)
    _crossover_signals(bars.bounds, fast, slow, tradable_bars(bars), signal)
    return signal


def level_signals(bars: Bars, rsi: np.ndarray, enter_below: float, exit_above: float) -> np.ndarray:
    """Per row: ENTER where rsi < enter_below, EXIT where rsi > exit_above (NaN: 0)."""
    signal = np.zeros(bars.n_rows, dtype=np.int8)
    signal[rsi < enter_below] = ENTER
    signal[rsi > exit_above] = EXIT
    signal[~tradable_bars(bars)] = 0
    return signal


def tradable_bars(bars: Bars) -> np.ndarray:
    """Rows whose open, high, low and close are all finite and > 0."""
    return _tradable(*(bars.column(c) for c in ("open", "high", "low", "close")))


@numba.njit(cache=True)
def _tradable(open_, high, low, close):
    n = close.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        # NaN compares false, so a NaN price is not tradable either.
        out[i] = open_[i] > 0.0 and high[i] > 0.0 and low[i] > 0.0 and close[i] > 0.0
        out[i] = out[i] and math.isfinite(open_[i] + high[i] + low[i] + close[i])
    return out


@numba.njit(cache=True)
def _crossover_signals(bounds, fast, slow, tradable, signal):
    for k in range(bounds.shape[0] - 1):
        state = -1  # unknown; then 1 when fast > slow, 0 otherwise
        for i in range(bounds[k], bounds[k + 1]):
            if not tradable[i] or math.isnan(fast[i]) or math.isnan(slow[i]):
                continue
            above = 1 if fast[i] > slow[i] else 0
            if state == 0 and above == 1:
                signal[i] = ENTER
            elif state == 1 and above == 0:
                signal[i] = EXIT
            state = above


def run_signal_sleeves(
    bars: Bars,
    signal: np.ndarray,
    *,
    start_cash: float,
    commission_rate: float,
    slippage_rate: float,
    notional_stop_atr: float,
) -> tuple[TradeRecords, np.ndarray]:
    """Trade every symbol's long-only sleeve on ``signal``; the trades and each row's sleeve equity."""
    records = allocate_records(bars.n_rows)
    sleeve_equity = np.empty(bars.n_rows)
    counts = np.zeros(bars.n_symbols, dtype=np.int64)
    _signal_sleeves(
        bars.bounds,
        bars.column("open"),
        bars.column("close"),
        bars.column("atr_14"),
        tradable_bars(bars),
        signal,
        float(start_cash),
        commission_rate,
        slippage_rate,
        notional_stop_atr,
        sleeve_equity,
        counts,
        *(getattr(records, f) for f in TradeRecords.__dataclass_fields__),
    )
    return compact_records(records, bars.bounds[:-1], counts), sleeve_equity


@numba.njit(cache=True, parallel=True)
def _signal_sleeves(bounds, open_, close, atr, tradable, signal, start_cash, commission_rate,
                    slippage_rate, notional_stop_atr, sleeve_equity, counts,
                    entry_row, exit_row, side, setup, exit_reason, shares, entry_price,
                    exit_price, fees, pnl, risk_per_share):  # fmt: skip
    # Symbol k writes its trades into slots bounds[k].. (it has at most one per row).
    for k in numba.prange(bounds.shape[0] - 1):
        counts[k] = _one_sleeve(
            bounds[k], bounds[k + 1], open_, close, atr, tradable, signal, start_cash,
            commission_rate, slippage_rate, notional_stop_atr, sleeve_equity,
            entry_row, exit_row, side, setup, exit_reason, shares, entry_price, exit_price,
            fees, pnl, risk_per_share,
        )  # fmt: skip


@numba.njit(cache=True)
def _one_sleeve(s, e, open_, close, atr, tradable, signal, cash, commission_rate, slippage_rate,
                notional_stop_atr, sleeve_equity, entry_row, exit_row, side, setup, exit_reason,
                shares, entry_price, exit_price, fees, pnl, risk_per_share):  # fmt: skip
    held = 0  # shares held
    pending = 0  # ENTER / EXIT order waiting for the next tradable open
    pending_risk = math.nan
    last_close = math.nan
    t = s  # the current trade's slot
    for i in range(s, e):
        if tradable[i]:
            if pending == ENTER:
                fill = entry_fill(open_[i], 1, slippage_rate)
                n = affordable_shares(cash, fill, commission_rate)
                if n > 0:
                    fee = commission(n, fill, commission_rate)
                    cash -= n * fill + fee
                    held = n
                    entry_row[t] = i
                    side[t] = 1
                    setup[t] = SETUP_NONE
                    shares[t] = n
                    entry_price[t] = fill
                    fees[t] = fee
                    risk_per_share[t] = pending_risk
            elif pending == EXIT:
                fill = exit_fill(open_[i], 1, slippage_rate)
                fee = commission(held, fill, commission_rate)
                cash += held * fill - fee
                exit_row[t] = i
                exit_price[t] = fill
                exit_reason[t] = EXIT_SIGNAL
                fees[t] += fee
                pnl[t] = held * (fill - entry_price[t]) - fees[t]
                held = 0
                t += 1
            pending = 0
            last_close = close[i]
            if held == 0 and signal[i] == ENTER:
                pending = ENTER
                pending_risk = notional_stop_atr * atr[i]
            elif held > 0 and signal[i] == EXIT:
                pending = EXIT
        sleeve_equity[i] = cash + held * last_close if held > 0 else cash
    if held > 0:  # still open: marked at the last tradable close
        exit_row[t] = -1
        exit_price[t] = math.nan
        exit_reason[t] = OPEN
        pnl[t] = held * (last_close - entry_price[t]) - fees[t]
        t += 1
    return t - s
