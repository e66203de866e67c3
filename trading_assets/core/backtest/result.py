"""What every strategy of the backtest engine returns, and the fill and cost rules they share.

Fills (no look-ahead): a signal judged at the close of session t fills at the OPEN of session t+1
(the symbol's next bar), moved against the trader by ``slippage_bps`` (a buy pays more, a sell
receives less). A stop or target touched inside a bar fills at the stop/target price, or at the
bar's open when the bar opened beyond it (a gap through: beyond the stop, the stop fills at the
open; else beyond the target, the target fills at the open, as the gap came first). When a bar's
range holds both the stop and the target, the stop is assumed. Stop and target fills carry no slippage beyond the gap rule.
Commission: ``commission_bps`` of the traded notional on each side, reported in ``fees``.

Trades: one row per round trip (a partial exit is its own row with the shares it sold); a trade
still open at the last bar has a null ``exit_date``/``exit_price``/``exit_reason``, and its pnl
marked at the last close. ``r_multiple`` = pnl / (shares x initial risk per share), where the
initial risk is entry - stop (short: stop - entry); strategies without a stop rule use a notional
stop of NOTIONAL_STOP_ATR x atr_14 at the signal session, so expectancy in R is comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

TRADE_COLUMNS: tuple[str, ...] = (
    "strategy",
    "symbol",
    "side",  # "long" | "short"
    "setup",  # stdev: "MR" | "TC"; other strategies: null
    "entry_date",
    "entry_price",
    "exit_date",
    "exit_price",
    "shares",
    "fees",
    "pnl",
    "r_multiple",
    "exit_reason",
)
LONG, SHORT = "long", "short"
STRATEGIES: tuple[str, ...] = ("ma_crossover", "rsi_mean_reversion", "stdev", "watchlist_momentum")

DEFAULT_EQUITY = 100_000.0
DEFAULT_COMMISSION_BPS = 1.0
DEFAULT_SLIPPAGE_BPS = 5.0
# The notional stop for R of strategies without a stop rule (as the sizing's 2 ATR stop).
NOTIONAL_STOP_ATR = 2.0

# Columns the engine reads from ``bars`` (raw prices joined with compute_indicators' columns).
PRICE_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close", "volume")


class BacktestInputError(ValueError):
    """Bars, parameters, the strategy name or a side input the engine cannot use."""


@dataclass(frozen=True)
class BacktestResult:
    strategy: str
    trades: pd.DataFrame  # TRADE_COLUMNS, ordered by entry_date, symbol
    equity: pd.Series  # daily portfolio equity (float), indexed by session date (datetime.date)
