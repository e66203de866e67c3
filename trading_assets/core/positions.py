"""A daily equity curve for round trips that come without one (the user's trade journal).

The backtest engine marks its own portfolio every session. A journal of fills does not: its
round trips (TRADE_COLUMNS rows, from trading_assets.core.journal) are marked here at each
session's close, so the journal gets the same performance summary as a strategy:

    equity(d) = starting_equity
                + sum of pnl of the rows closed on or before d            (realised, net of fees)
                + sum over rows open on d of  sign x shares x (close(d) - entry_price) - fees

A row is open on sessions entry_date <= d < exit_date (an open row: every session from its entry).
All of a row's fees are charged from its entry on, so the equity never shows a profit the fees
have not paid for. A symbol without a bar on d is marked at its last close before d (at its entry
price before its first close). Sessions run from the first entry to the last session of ``closes``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_assets.core.backtest.result import SHORT
from trading_assets.core.frames import require_columns

TRADE_INPUT_COLUMNS = (
    "symbol",
    "side",
    "entry_date",
    "entry_price",
    "exit_date",
    "shares",
    "fees",
    "pnl",
)
CLOSE_INPUT_COLUMNS = ("symbol", "date", "close")


class PositionsInputError(ValueError):
    """Round trips or closes that cannot be marked to market."""


def mark_to_market(trades: pd.DataFrame, closes: pd.DataFrame, starting_equity: float) -> pd.Series:
    """Daily equity of ``trades`` (see the module docstring), indexed by session date."""
    require_columns(trades, TRADE_INPUT_COLUMNS, "trades", PositionsInputError)
    require_columns(closes, CLOSE_INPUT_COLUMNS, "closes", PositionsInputError)
    if trades.empty or closes.empty:
        return pd.Series(dtype="float64", name="equity")
    first = min(trades["entry_date"])
    dates = sorted(d for d in set(closes["date"]) if d >= first)
    if not dates:
        return pd.Series(dtype="float64", name="equity")
    wanted = set(trades["symbol"])
    marks = (
        closes[closes["symbol"].isin(wanted)]
        .pivot_table(index="date", columns="symbol", values="close", aggfunc="last")
        .reindex(sorted(set(closes["date"])))
        .ffill()
        .reindex(dates)
    )
    index = pd.Index(dates, name="date")
    equity = np.full(len(dates), float(starting_equity))
    day = np.array(dates, dtype="datetime64[D]")
    for row in trades.itertuples(index=False):
        entry = np.datetime64(row.entry_date, "D")
        closed = row.exit_date is not None and not pd.isna(row.exit_date)
        exit_ = np.datetime64(row.exit_date, "D") if closed else np.datetime64("9999-12-31")
        sign = -1.0 if row.side == SHORT else 1.0
        if row.symbol in marks.columns:
            close = marks[row.symbol].to_numpy(dtype="float64")
        else:
            close = np.full(len(dates), np.nan)
        close = np.where(np.isnan(close), float(row.entry_price), close)
        held = (day >= entry) & (day < exit_)
        equity += np.where(
            held, sign * float(row.shares) * (close - float(row.entry_price)) - float(row.fees), 0.0
        )
        if closed:
            equity += np.where(day >= exit_, float(row.pnl), 0.0)
    return pd.Series(equity, index=index, name="equity")
