"""Performance metrics of a return series, trade statistics of a backtest, and equity helpers.

``performance_summary(returns, risk_free)`` equals quantstats 0.0.86 (a dev/test dependency only,
never imported here) within 1e-12 on daily returns, with N the number of returns kept (NaN and
+-inf dropped, see below), r_f = (1 + risk_free)^(1/252) - 1 the daily risk-free rate and
x = r - r_f the daily excess returns:

- total_return  = prod(1 + r) - 1                                  comp(r)
- cagr          = (1 + total_return)^(252 / N) - 1                 cagr(r, periods=252)
- volatility    = std(r, ddof=1) x sqrt(252)                       volatility(r, periods=252)
- sharpe        = mean(x) / std(x, ddof=1) x sqrt(252)             sharpe(r, rf=rf, periods=252)
- sortino       = mean(x) / sqrt(sum(min(x, 0)^2) / N) x sqrt(252) sortino(r, rf=rf, periods=252)
  (the downside deviation is taken over all N observations, not only the losing ones)
- max_drawdown  = min(E_t / max(E_0..E_t)) - 1 on E_0 = 1.0, E_t = prod(1 + r_1..r_t)
                                                                   max_drawdown(r)
- calmar        = cagr / |max_drawdown|                            calmar(r, periods=252)
- win_rate      = #(r > 0) / #(r != 0)                             win_rate(r)
- profit_factor = sum(r > 0) / |sum(r < 0)|                        profit_factor(r)
- avg_win       = mean(r | r > 0)                                  avg_win(r)
- avg_loss      = mean(r | r < 0)  (negative)                      avg_loss(r)

The right-hand column names the quantstats.stats function and arguments each key equals.
quantstats' defaults (periods=252, compounded=True, annualize=True) already are these conventions.
cagr and calmar ignore the risk-free rate, as in quantstats. Where quantstats differs we keep the
convention above and return NaN rather than raise, warn or return an infinity:

- NaN (and +-inf, which quantstats turns into NaN) are missing observations, dropped wherever they
  are (leading or inside): quantstats skips them in every statistic, counts only the observed
  returns in N and carries the equity flat through them, which is the same as dropping them.
- an empty (or all-NaN) series: total_return 0.0 and max_drawdown 0.0 (the equity never left
  1.0), everything else NaN. quantstats raises DataValidationError in most functions.
- fewer than two returns: volatility and sharpe NaN (as quantstats).
- zero variance (all returns equal): volatility 0.0 and sharpe NaN. quantstats divides by the
  rounding noise of pandas' std (about 1e-19), giving +-inf or a Sharpe near 1e16.
- no downside (no excess return below zero): sortino NaN (as quantstats).
- no drawdown: calmar NaN (quantstats: inf, or NaN, with a RuntimeWarning).
- no losing return: profit_factor NaN (quantstats: inf, or 0.0 when there is no gain either).
- no non-zero return: win_rate NaN (quantstats: 0.0 with a UserWarning).
- a negative risk_free is subtracted like any other (quantstats applies rf only when rf > 0).
- cagr whose annualised growth overflows a float (a huge gain over a few days): NaN.
- returns are always read as returns: quantstats reads a series with no negative value and one
  above 1 (+100 %) as prices and takes their pct_change.

``trade_statistics(trades, equity)`` reads the trades of backtest/result.py (TRADE_COLUMNS):

- trade_count      = closed rows (non-null exit_date); a partial exit is its own row and counts.
- trade_win_rate   = share of closed rows with pnl > 0 (NaN without a closed trade).
- expectancy_r     = mean r_multiple of closed rows with a finite r_multiple (NaN when none).
- avg_holding_days = mean calendar days from entry_date to exit_date of closed rows (NaN when none).
- exposure_pct     = 100 x share of the equity curve's sessions d on which at least one position
  is open: entry_date <= d < exit_date, or entry_date <= d for a trade still open. Overlapping
  trades count a session once; a trade entered and exited on the same session adds none.

``returns_from_equity`` gives the simple returns E_t / E_{t-1} - 1 (first session dropped) and
``drawdown`` gives E_t / max(E_0..E_t) - 1 on the equity as given.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trading_assets.core.frames import require_columns

TRADING_DAYS_PER_YEAR = 252

SUMMARY_KEYS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "win_rate",
    "profit_factor",
    "avg_win",
    "avg_loss",
)
TRADE_STATISTICS_KEYS: tuple[str, ...] = (
    "trade_count",
    "trade_win_rate",
    "expectancy_r",
    "avg_holding_days",
    "exposure_pct",
)
# The columns of TRADE_COLUMNS (backtest/result.py) that trade_statistics reads.
TRADE_STATISTICS_COLUMNS: tuple[str, ...] = ("entry_date", "exit_date", "pnl", "r_multiple")

NAN = float("nan")


class MetricsInputError(ValueError):
    """A return series, risk-free rate, trades frame or equity curve the metrics cannot use."""


def performance_summary(returns: pd.Series, risk_free: float = 0.0) -> dict[str, float]:
    """The SUMMARY_KEYS of daily simple ``returns`` (the module docstring gives each formula).

    ``risk_free`` is an annual rate (0.02 = 2 %), made daily as (1 + rf)^(1/252) - 1 and taken
    off the returns for sharpe and sortino only. NaN and +-inf returns are dropped as missing
    observations. Edge cases (empty, one return, zero variance, no loss) give a value or NaN,
    never an exception or a numpy warning; the module docstring lists them beside quantstats'.
    """
    r = _observed_returns(returns)
    rf_daily = _daily_risk_free(risk_free)
    n = r.size
    sqrt_year = math.sqrt(TRADING_DAYS_PER_YEAR)

    total_return = float(np.prod(1.0 + r)) - 1.0
    cagr = _cagr(total_return, n)
    max_drawdown = _max_drawdown(r)

    # A constant series has zero variance by definition; pandas/numpy's std leaves ~1e-19 of
    # rounding there, which quantstats divides by. We call it 0 and the Sharpe undefined.
    constant = n >= 2 and bool(np.all(r == r[0]))
    excess = r - rf_daily
    if n < 2:
        volatility = sharpe = NAN
    elif constant:
        volatility, sharpe = 0.0, NAN
    else:
        volatility = float(np.std(r, ddof=1)) * sqrt_year
        sharpe = float(np.mean(excess)) / float(np.std(excess, ddof=1)) * sqrt_year

    # Downside deviation over all N observations (Red Rock Capital, as quantstats).
    losses = excess[excess < 0]
    downside = math.sqrt(float(np.sum(losses**2)) / n) if n else 0.0
    sortino = float(np.mean(excess)) / downside * sqrt_year if downside > 0 else NAN

    calmar = cagr / abs(max_drawdown) if max_drawdown != 0 and not math.isnan(cagr) else NAN

    wins, falls = r[r > 0], r[r < 0]
    non_zero = wins.size + falls.size
    win_rate = wins.size / non_zero if non_zero else NAN
    loss_sum = abs(float(np.sum(falls)))
    profit_factor = float(np.sum(wins)) / loss_sum if loss_sum > 0 else NAN
    avg_win = float(np.mean(wins)) if wins.size else NAN
    avg_loss = float(np.mean(falls)) if falls.size else NAN

    return {
        "total_return": total_return,
        "cagr": cagr,
        "volatility": volatility,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_drawdown,
        "calmar": calmar,
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "avg_win": avg_win,
        "avg_loss": avg_loss,
    }


def trade_statistics(trades: pd.DataFrame, equity: pd.Series) -> dict[str, float | int]:
    """The TRADE_STATISTICS_KEYS of a backtest's ``trades`` over its ``equity`` sessions.

    ``trades`` has the TRADE_COLUMNS of backtest/result.py (one row per round trip or partial
    exit; an open trade has a null exit_date; r_multiple may be null). The definitions are in the
    module docstring. Without a closed trade the rates are NaN and trade_count 0; without a
    session exposure_pct is NaN.
    """
    require_columns(trades, TRADE_STATISTICS_COLUMNS, "trades", MetricsInputError)
    entry = _as_timestamps(trades["entry_date"], "entry_date")
    exit_ = _as_timestamps(trades["exit_date"], "exit_date")
    if entry.isna().any():
        raise MetricsInputError(f"{int(entry.isna().sum())} trade(s) without an entry_date")
    closed = exit_.notna()
    backwards = closed & (exit_ < entry)
    if backwards.any():
        shown = trades.loc[backwards, ["entry_date", "exit_date"]].head(5).to_dict("records")
        raise MetricsInputError(f"{int(backwards.sum())} trade(s) exit before entry, e.g. {shown}")

    pnl = pd.to_numeric(trades["pnl"], errors="coerce")[closed]
    if pnl.isna().any():
        raise MetricsInputError(f"{int(pnl.isna().sum())} closed trade(s) without a pnl")
    r_multiple = pd.to_numeric(trades["r_multiple"], errors="coerce")[closed].to_numpy(
        dtype="float64", na_value=np.nan
    )
    r_multiple = r_multiple[np.isfinite(r_multiple)]

    trade_count = int(closed.sum())
    if trade_count:
        trade_win_rate = float((pnl > 0).mean())
        avg_holding_days = float((exit_[closed] - entry[closed]).dt.days.mean())
    else:
        trade_win_rate = avg_holding_days = NAN
    expectancy_r = float(np.mean(r_multiple)) if r_multiple.size else NAN

    return {
        "trade_count": trade_count,
        "trade_win_rate": trade_win_rate,
        "expectancy_r": expectancy_r,
        "avg_holding_days": avg_holding_days,
        "exposure_pct": _exposure_pct(entry, exit_, equity),
    }


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Daily simple returns E_t / E_{t-1} - 1 of an equity curve, without its first session."""
    equity = _as_float_series(equity, "equity")
    return equity.pct_change(fill_method=None).iloc[1:]


def drawdown(equity: pd.Series) -> pd.Series:
    """E_t / max(E_0..E_t) - 1 of an equity curve: 0 at a new high, negative below it."""
    equity = _as_float_series(equity, "equity")
    return equity / equity.cummax() - 1.0


def _observed_returns(returns: pd.Series) -> np.ndarray:
    """The finite returns as float64, in order: NaN and +-inf are missing observations."""
    values = _as_float_series(returns, "returns").to_numpy(dtype="float64", na_value=np.nan)
    return values[np.isfinite(values)]


def _daily_risk_free(risk_free: float) -> float:
    """(1 + rf)^(1/252) - 1, quantstats' de-annualisation of an annual rate."""
    if isinstance(risk_free, bool) or not isinstance(risk_free, (int, float, np.number)):
        raise MetricsInputError(f"risk_free must be a number, got {risk_free!r}")
    risk_free = float(risk_free)
    if not math.isfinite(risk_free) or risk_free <= -1.0:
        raise MetricsInputError(
            f"risk_free must be a finite annual rate above -100 %, got {risk_free}"
        )
    return (1.0 + risk_free) ** (1.0 / TRADING_DAYS_PER_YEAR) - 1.0


def _cagr(total_return: float, n: int) -> float:
    """(1 + total)^(1 / years) - 1 with years = N / 252, as quantstats; NaN where undefined."""
    if n == 0:
        return NAN
    years = n / TRADING_DAYS_PER_YEAR
    # quantstats adds 1.0 back to comp()'s result rather than using the product itself.
    wealth = total_return + 1.0
    if wealth < 0:  # only reachable with returns below -100 %: no real-valued growth rate
        return NAN
    try:
        return abs(wealth) ** (1.0 / years) - 1.0
    except OverflowError:
        return NAN


def _max_drawdown(r: np.ndarray) -> float:
    """min(E_t / running max) - 1 on the equity compounded from 1.0, the 1.0 start included."""
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    return float(np.min(equity / np.maximum.accumulate(equity))) - 1.0


def _exposure_pct(entry: pd.Series, exit_: pd.Series, equity: pd.Series) -> float:
    """100 x share of sessions with a position open on entry <= d < exit (or open to the end)."""
    if not isinstance(equity, pd.Series):
        raise MetricsInputError(f"equity must be a Series, got {type(equity).__name__}")
    sessions = np.sort(_as_timestamps(pd.Series(equity.index), "equity index").to_numpy())
    if sessions.size == 0:
        return NAN
    # A difference array: +1 at each trade's first session, -1 at the session it exits on.
    starts = np.searchsorted(sessions, entry.to_numpy(), side="left")
    ends = np.where(
        exit_.notna().to_numpy(),
        np.searchsorted(sessions, exit_.fillna(entry).to_numpy(), side="left"),
        sessions.size,
    )
    changes = np.zeros(sessions.size + 1, dtype=np.int64)
    np.add.at(changes, starts, 1)
    np.add.at(changes, ends, -1)
    open_positions = np.cumsum(changes[:-1])
    return float(np.count_nonzero(open_positions > 0)) / sessions.size * 100.0


def _as_float_series(values: pd.Series, what: str) -> pd.Series:
    if not isinstance(values, pd.Series):
        raise MetricsInputError(f"{what} must be a Series, got {type(values).__name__}")
    try:
        return values.astype("float64")
    except (TypeError, ValueError) as exc:
        raise MetricsInputError(f"{what} must be numeric: {exc}") from exc


def _as_timestamps(values: pd.Series, what: str) -> pd.Series:
    """Dates (datetime.date, Timestamp or ISO text; null allowed) as naive datetime64."""
    try:
        stamps = pd.to_datetime(values)
    except (TypeError, ValueError) as exc:
        raise MetricsInputError(f"{what} holds values that are not dates: {exc}") from exc
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_localize(None)
    return stamps
