"""From the kernels' flat trade records and sleeve values to BacktestResult's frames.

Kernels record each trade as row numbers into the prepared bars (the entry fill's row, the exit
fill's row or -1 while open) plus numbers, and each sleeve's equity at the close of each of its
rows. This module builds the trades frame in one go from those arrays and sums the sleeves into the
portfolio's daily equity; nothing here loops over trades or symbols in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from trading_assets.core.backtest.bars import Bars
from trading_assets.core.backtest.fills import (
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TARGET_1,
    EXIT_TARGET_2,
    EXIT_TRAIL,
    OPEN,
)
from trading_assets.core.backtest.result import LONG, SHORT, TRADE_COLUMNS, BacktestResult

SETUP_NONE, SETUP_MR, SETUP_TC = 0, 1, 2  # kernel codes of the ``setup`` column
MR, TC = "MR", "TC"
_SETUP_LABELS = np.array([None, MR, TC], dtype=object)
# exit_reason labels by kernel code (fills.OPEN .. EXIT_TARGET); an open trade's is null.
EXIT_REASONS: dict[int, str | None] = {
    OPEN: None,
    EXIT_SIGNAL: "signal",
    EXIT_STOP: "stop",
    EXIT_TARGET: "target",
    EXIT_TARGET_1: "target_1",
    EXIT_TARGET_2: "target_2",
    EXIT_TRAIL: "trail_sma_50",
}
_EXIT_LABELS = np.array([EXIT_REASONS[c] for c in sorted(EXIT_REASONS)], dtype=object)
_SIDE_LABELS = np.array([SHORT, None, LONG], dtype=object)  # by side + 1


@dataclass(frozen=True, eq=False)
class TradeRecords:
    """A kernel's trades, one element per trade, in any order."""

    entry_row: np.ndarray  # int64: row of the entry fill in the prepared bars
    exit_row: np.ndarray  # int64: row of the exit fill, -1 while open
    side: np.ndarray  # int8: +1 long, -1 short
    setup: np.ndarray  # int8: SETUP_NONE / SETUP_MR / SETUP_TC
    exit_reason: np.ndarray  # int8: fills.OPEN / EXIT_SIGNAL / EXIT_STOP / EXIT_TARGET
    shares: np.ndarray  # int64
    entry_price: np.ndarray  # float64, fill price after slippage
    exit_price: np.ndarray  # float64, NaN while open
    fees: np.ndarray  # float64, commission paid (entry, plus exit once closed)
    pnl: np.ndarray  # float64, after fees; an open trade marked at its symbol's last close
    risk_per_share: np.ndarray  # float64, initial risk per share for r_multiple


def allocate_records(capacity: int) -> TradeRecords:
    """Uninitialised record arrays for up to ``capacity`` trades (untouched pages cost nothing)."""
    i64, i8, f64 = np.int64, np.int8, np.float64
    return TradeRecords(
        *(np.empty(capacity, dtype=t) for t in (i64, i64, i8, i8, i8, i64, f64, f64, f64, f64, f64))
    )


def compact_records(records: TradeRecords, starts: np.ndarray, counts: np.ndarray) -> TradeRecords:
    """Keep slots starts[k] .. starts[k] + counts[k] of each block k (a kernel wrote symbol k's
    trades from its first row on), in block order."""
    keep = _slots(starts.astype(np.int64), counts.astype(np.int64))
    return TradeRecords(*(getattr(records, f)[keep] for f in TradeRecords.__dataclass_fields__))


@numba.njit(cache=True)
def _slots(starts, counts):
    out = np.empty(counts.sum(), dtype=np.int64)
    j = 0
    for k in range(starts.shape[0]):
        for i in range(counts[k]):
            out[j] = starts[k] + i
            j += 1
    return out


def trades_frame(strategy: str, bars: Bars, records: TradeRecords) -> pd.DataFrame:
    """TRADE_COLUMNS ordered by entry_date, then symbol (ties in record order); dates are
    datetime.date objects, an open trade's exit_date/exit_price/exit_reason null."""
    entry_date = bars.date_codes[records.entry_row]
    symbol_code = bars.symbol_codes[records.entry_row]
    order = np.lexsort((symbol_code, entry_date))
    r = TradeRecords(*(getattr(records, f)[order] for f in TradeRecords.__dataclass_fields__))
    entry_date, symbol_code = entry_date[order], symbol_code[order]
    dates = np.append(bars.session_dates(), None)  # the extra slot: no exit yet
    exit_date = np.where(r.exit_row >= 0, bars.date_codes[r.exit_row], bars.n_sessions)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_multiple = r.pnl / (r.shares * r.risk_per_share)
    r_multiple[~np.isfinite(r_multiple)] = np.nan  # no risk known (NaN ATR) or zero risk
    n = order.shape[0]
    columns = {
        "strategy": np.full(n, strategy, dtype=object),
        "symbol": bars.symbols[symbol_code],
        "side": _SIDE_LABELS[r.side.astype(np.int64) + 1],
        "setup": _SETUP_LABELS[r.setup],
        "entry_date": dates[entry_date],
        "entry_price": r.entry_price,
        "exit_date": dates[exit_date],
        "exit_price": r.exit_price,
        "shares": r.shares,
        "fees": r.fees,
        "pnl": r.pnl,
        "r_multiple": r_multiple,
        "exit_reason": _EXIT_LABELS[r.exit_reason],
    }
    return pd.DataFrame({c: columns[c] for c in TRADE_COLUMNS}, copy=False)


def empty_trades() -> pd.DataFrame:
    """A trades frame without rows, with TRADE_COLUMNS and their dtypes."""
    objects = {"strategy", "symbol", "side", "setup", "entry_date", "exit_date", "exit_reason"}
    dtypes = {c: object if c in objects else np.float64 for c in TRADE_COLUMNS}
    dtypes["shares"] = np.int64
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def equity_series(bars: Bars, values: np.ndarray) -> pd.Series:
    """Daily portfolio equity (one value per session of ``bars``) as BacktestResult.equity."""
    index = pd.Index(bars.session_dates(), dtype=object, name="date")
    return pd.Series(np.asarray(values, dtype=np.float64), index=index, name="equity")


def empty_result(strategy: str) -> BacktestResult:
    """The result of a backtest over no bars: no trades, an empty equity series."""
    equity = pd.Series(np.empty(0), index=pd.Index([], dtype=object, name="date"), name="equity")
    return BacktestResult(strategy=strategy, trades=empty_trades(), equity=equity)


def sum_sleeves(bars: Bars, sleeve_equity: np.ndarray, start_cash: float) -> np.ndarray:
    """The portfolio's equity per session: the sum over symbols of each sleeve's value at its last
    row on or before the session (``start_cash`` before its first row)."""
    return _sum_sleeves(
        bars.bounds, bars.date_codes, sleeve_equity, float(start_cash), bars.n_sessions
    )


@numba.njit(cache=True)
def _sum_sleeves(bounds, date_codes, sleeve_equity, start_cash, n_sessions):
    # Each sleeve's value is carried over the sessions until its next row (or the end): one add per
    # symbol and session, summed in symbol order.
    total = np.zeros(n_sessions)
    for k in range(bounds.shape[0] - 1):
        value = start_cash
        done = 0
        for i in range(bounds[k], bounds[k + 1]):
            d = date_codes[i]
            for j in range(done, d):
                total[j] += value
            value = sleeve_equity[i]
            done = d
        for j in range(done, n_sessions):
            total[j] += value
    return total
