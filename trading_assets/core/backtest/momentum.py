"""The ``watchlist_momentum`` strategy: trade the watchlist's sized plans from one cash account.

The rule (issue): enter the day's watchlist rows with the sizing plan's shares, no new entries in
environment D; the portfolio heat limit counts the open positions' risk too (the watchlist's
per-day heat is only a plan); exit at the stop, sell a third at +10 % and a third at +20 %, trail
the rest under sma_50; one shared cash account starting at ``equity``. Fills and costs follow
result.py through fills.py. ``params``: ``target_1_pct`` and ``target_2_pct`` (0.10, 0.20).

Where the rule is silent, a trader's reading, settled here:

- **Candidates.** A watchlist row is a candidate at the close of its date t when its
  ``sizing_status`` is 'sized', its ``shares`` > 0, it is not ``heat_exceeded`` and its plan has
  0 < stop < entry. The day's candidates are taken in the plan's order: rs_rating descending
  (null last), ties symbol ascending. The plan's shares are used as they are (the watchlist was
  sized for its own equity setting; rescaling them would be another rule). A symbol held, or with
  an entry order waiting, is not bought again; one closed earlier the same day may be. A row whose
  date is no session of ``bars``, or whose symbol has no bars, is never a candidate.
- **Environment.** The signal session's row of ``market_environment`` decides: environment D, or a
  date absent there or with a null environment, means no new entry. Its ``heat_limit`` (not the
  watchlist's copy) sets the limit.
- **Heat.** Open risk of a position = remaining shares x max(0, entry fill - stop): the capital
  still at stake down to the (fixed) stop, so it shrinks as thirds are sold. An entry order
  waiting for its fill counts its plan risk, shares x (plan entry - stop); a position already
  due to be sold by the trail at the next open counts nothing. A candidate is skipped when the
  open risk plus its plan risk would exceed heat_limit x the equity at the signal close; later,
  smaller ones may still fit (skip and continue, as sizing.py).
- **Entry.** A market order at the symbol's next tradable bar's open, slippage against us (a bar
  is tradable when open, high, low and close are all finite and > 0, as every strategy). Not
  filled when that open is at or below the plan's stop (the setup failed before we got in), or
  when the symbol has no later bar. Cash: the fill buys min(plan shares, the whole shares the
  cash affords with commission); none affordable, no trade. Reducing rather than skipping keeps
  the day's strongest setup and only lowers its risk, so the heat check still holds. Entries at
  one open are filled in the order they were accepted, after that open's trail exits, whose
  proceeds they may use; cash from stops and targets hit later in the bar is not available.
- **Stop and targets.** The stop is the plan's stop price. Targets are +10 % / +20 % above the
  actual entry fill: the scale-out is a profit on what was paid, and a gap up at the open would
  otherwise leave the plan's target at or under the fill. Each third is floor(shares / 3) (none
  sold when that is 0); the remainder trails. On each tradable bar, from the entry bar on, the
  stop and the next target are judged with fills.stop_or_target (an open beyond a level fills
  there at the open; a range holding both assumes the stop); a filled first target lets the same
  bar reach the second, against the stop again.
- **Trail.** A tradable close below a finite sma_50 while held, from the entry session on, sells
  everything left at the symbol's next tradable open (exit_reason 'trail_sma_50'; the thirds are 'target_1' and 'target_2'). It guards the whole
  position, not only the last third: a close under the 50-day breaks the screen's own premise,
  and a position that never reaches +10 % would otherwise sit until its stop.
- **Bars.** A non-tradable bar is not traded on: no fill, no stop or target, no trail signal, the
  position keeps its last tradable close as mark. A symbol whose bars end keeps its last mark; a
  position still held at the end is reported open (no exit), marked there. Equity is cash plus
  the marks, once per session of ``bars``.
- **Trades.** One row per round trip, each third its own row; the entry commission is split by
  shares. r_multiple uses the initial risk per share, entry fill - stop.

The simulation is one numba pass over the sessions in date order keeping per-symbol state (at most
one position or waiting order per symbol) and a list of the active symbols: per session it touches
only the active positions and the day's candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from trading_assets.core.backtest.bars import Bars, prepare_bars
from trading_assets.core.backtest.fills import (
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TARGET_1,
    EXIT_TARGET_2,
    EXIT_TRAIL,
    OPEN,
    affordable_shares,
    bps_rate,
    check_equity,
    commission,
    entry_fill,
    exit_fill,
    stop_or_target,
)
from trading_assets.core.backtest.ledger import (
    SETUP_NONE,
    TradeRecords,
    empty_result,
    equity_series,
    trades_frame,
)
from trading_assets.core.backtest.params import MomentumParams, resolve_params
from trading_assets.core.backtest.result import BacktestInputError, BacktestResult
from trading_assets.core.backtest.sleeves import tradable_bars
from trading_assets.core.frames import reject_duplicate_keys, require_columns

STRATEGY = "watchlist_momentum"

TRAIL_AVERAGE = "sma_50"  # the rest is sold after a close below this average
SIZED = "sized"  # sizing.py's status of a row with a usable plan
NO_ENTRY_ENVIRONMENT = "D"

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", TRAIL_AVERAGE)
WATCHLIST_INPUT_COLUMNS: tuple[str, ...] = (
    "symbol",
    "date",
    "rs_rating",
    "entry",
    "stop",
    "shares",
    "heat_exceeded",
    "sizing_status",
)
ENVIRONMENT_INPUT_COLUMNS: tuple[str, ...] = ("date", "environment", "heat_limit")

# A sum of risk $ equal to the limit up to float noise is "not over" (as sizing.py).
_HEAT_TOLERANCE_DOLLARS = 1e-6
_FLAT, _PENDING, _HELD = 0, 1, 2  # per-symbol state in the kernel


def run_watchlist_momentum(
    bars: pd.DataFrame,
    params: dict | None,
    *,
    equity: float,
    commission_bps: float,
    slippage_bps: float,
    market_environment: pd.DataFrame | None,
    watchlist: pd.DataFrame | None,
) -> BacktestResult:
    """Backtest the watchlist's plans over ``bars`` (module docstring). Raises BacktestInputError
    for a missing watchlist or environment, missing columns, duplicated keys or bad numbers."""
    p = resolve_params(STRATEGY, params)
    commission_rate = bps_rate(commission_bps, "commission_bps")
    slippage_rate = bps_rate(slippage_bps, "slippage_bps")
    check_equity(equity)
    for frame, what in ((watchlist, "watchlist"), (market_environment, "market_environment")):
        if frame is None:
            raise BacktestInputError(f"{STRATEGY} needs the {what} frame; got None")
    require_columns(watchlist, WATCHLIST_INPUT_COLUMNS, "watchlist", BacktestInputError)
    require_columns(
        market_environment, ENVIRONMENT_INPUT_COLUMNS, "market_environment", BacktestInputError
    )
    reject_duplicate_keys(watchlist, ("symbol", "date"), "watchlist", BacktestInputError)
    reject_duplicate_keys(market_environment, ("date",), "market_environment", BacktestInputError)

    prepared = prepare_bars(bars, BAR_COLUMNS)
    if prepared.n_rows == 0:
        return empty_result(STRATEGY)
    cand = _candidates(prepared, watchlist, market_environment)
    records, equity_values = _simulate_momentum(
        prepared, cand, float(equity), commission_rate, slippage_rate, p
    )
    return BacktestResult(
        strategy=STRATEGY,
        trades=trades_frame(STRATEGY, prepared, records),
        equity=equity_series(prepared, equity_values),
    )


@dataclass(frozen=True, eq=False)
class _Candidates:
    """The usable watchlist rows in decision order (signal session, then the plan's order)."""

    session: np.ndarray  # int64: the signal session (index into Bars.sessions)
    symbol: np.ndarray  # int64: symbol code in Bars
    cursor: np.ndarray  # int64: the symbol's last row on or before the signal session
    shares: np.ndarray  # int64: the plan's shares
    entry: np.ndarray  # float64: the plan's entry (the signal close)
    stop: np.ndarray  # float64: the plan's stop price
    heat_limit: np.ndarray  # float64: the signal session's heat limit (fraction of equity)


def _candidates(bars: Bars, watchlist: pd.DataFrame, environment: pd.DataFrame) -> _Candidates:
    # The plan's own tests first: most watchlist rows are not sized, and only the rest is mapped.
    shares = _numbers(watchlist["shares"], "watchlist")
    entry = _numbers(watchlist["entry"], "watchlist")
    stop = _numbers(watchlist["stop"], "watchlist")
    planned = (
        (watchlist["sizing_status"].to_numpy(dtype=object) == SIZED)
        & ~watchlist["heat_exceeded"].fillna(False).to_numpy(dtype=bool)
        & (shares >= 1)
        & (stop > 0)
        & (entry > stop)
    )
    rows = watchlist.loc[planned, ["symbol", "date", "rs_rating"]]
    shares, entry, stop = shares[planned], entry[planned], stop[planned]
    days = _days(rows["date"], "watchlist")

    env_at = pd.Index(_days(environment["date"], "market_environment")).get_indexer(days)
    env_name = np.append(environment["environment"].to_numpy(dtype=object), None)[env_at]
    heat_limit = np.append(_numbers(environment["heat_limit"], "market_environment"), np.nan)
    heat_limit = heat_limit[env_at]

    session = pd.Index(bars.sessions).get_indexer(days)
    names = rows["symbol"].to_numpy(dtype=object)
    symbol = pd.Index(bars.symbols).get_indexer(names)
    # The symbol's last row with a date <= the signal session: (symbol, session) keys are sorted.
    span = np.int64(bars.n_sessions + 1)
    row_keys = bars.symbol_codes * span + bars.date_codes
    cursor = np.searchsorted(row_keys, symbol * span + session, side="right") - 1
    known = (symbol >= 0) & (session >= 0)
    has_later_bar = np.zeros(len(rows), dtype=bool)
    has_later_bar[known] = cursor[known] + 1 < bars.bounds[symbol[known] + 1]

    usable = (
        has_later_bar & (env_name != NO_ENTRY_ENVIRONMENT) & pd.notna(env_name) & (heat_limit > 0)
    )
    keep = np.flatnonzero(usable)
    rs = _numbers(rows["rs_rating"], "watchlist")[keep]
    # The plan's order within a session: rs_rating descending (null last), then symbol.
    rs_key = np.where(np.isnan(rs), np.inf, -rs)
    order = keep[np.lexsort((names[keep].astype(str), rs_key, session[keep]))]
    return _Candidates(
        session=session[order].astype(np.int64),
        symbol=symbol[order].astype(np.int64),
        cursor=cursor[order].astype(np.int64),
        shares=np.floor(shares[order]).astype(np.int64),
        entry=entry[order],
        stop=stop[order],
        heat_limit=heat_limit[order],
    )


def _days(values: pd.Series, what: str) -> np.ndarray:
    try:
        days = pd.to_datetime(values).to_numpy().astype("datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise BacktestInputError(f"{what} column 'date' holds values that are not dates") from exc
    if np.isnat(days).any():
        raise BacktestInputError(f"{what} column 'date' has null values")
    return days


def _numbers(values: pd.Series, what: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    if (numbers.isna() & values.notna()).any():
        raise BacktestInputError(f"{what} column {values.name!r} has non-numeric values")
    return numbers.to_numpy()


def _simulate_momentum(
    bars: Bars,
    cand: _Candidates,
    start_cash: float,
    commission_rate: float,
    slippage_rate: float,
    p: MomentumParams,
) -> tuple[TradeRecords, np.ndarray]:
    """Run the kernel; the trades as ledger records and the equity at each session's close."""
    capacity = 3 * cand.session.shape[0]  # an entry makes at most three rows
    ints = np.empty((capacity, _N_INT), dtype=np.int64)
    floats = np.empty((capacity, _N_FLOAT))
    equity = np.empty(bars.n_sessions)
    n = _momentum_kernel(
        bars.bounds,
        bars.date_codes,
        bars.column("open"),
        bars.column("high"),
        bars.column("low"),
        bars.column("close"),
        bars.column(TRAIL_AVERAGE),
        tradable_bars(bars),
        cand.session,
        cand.symbol,
        cand.cursor,
        cand.shares,
        cand.entry,
        cand.stop,
        cand.heat_limit,
        start_cash,
        commission_rate,
        slippage_rate,
        p.target_1_pct,
        p.target_2_pct,
        equity,
        ints,
        floats,
    )
    records = TradeRecords(
        entry_row=ints[:n, _I_ENTRY_ROW].copy(),
        exit_row=ints[:n, _I_EXIT_ROW].copy(),
        side=np.ones(n, dtype=np.int8),
        setup=np.full(n, SETUP_NONE, dtype=np.int8),
        exit_reason=ints[:n, _I_REASON].astype(np.int8),
        shares=ints[:n, _I_SHARES].copy(),
        entry_price=floats[:n, _F_ENTRY_PRICE].copy(),
        exit_price=floats[:n, _F_EXIT_PRICE].copy(),
        fees=floats[:n, _F_FEES].copy(),
        pnl=floats[:n, _F_PNL].copy(),
        risk_per_share=floats[:n, _F_RISK].copy(),
    )
    return records, equity


# Columns of the kernel's trade rows: integers and floats.
_I_ENTRY_ROW, _I_EXIT_ROW, _I_REASON, _I_SHARES, _N_INT = 0, 1, 2, 3, 4
_F_ENTRY_PRICE, _F_EXIT_PRICE, _F_FEES, _F_PNL, _F_RISK, _N_FLOAT = 0, 1, 2, 3, 4, 5


@numba.njit(cache=True)
def _record(ints, floats, t, entry_row, entry_price, stop, shares, exit_row, exit_price, reason,
            rate):  # fmt: skip
    """Write trade row t: ``shares`` of a position entered at ``entry_price``, closed at
    ``exit_price`` (exit_row -1 and exit_price = the mark: still open). Returns t + 1."""
    fees = commission(shares, entry_price, rate)
    if exit_row >= 0:
        fees += commission(shares, exit_price, rate)
    ints[t, _I_ENTRY_ROW] = entry_row
    ints[t, _I_EXIT_ROW] = exit_row
    ints[t, _I_REASON] = reason
    ints[t, _I_SHARES] = shares
    floats[t, _F_ENTRY_PRICE] = entry_price
    floats[t, _F_EXIT_PRICE] = exit_price if exit_row >= 0 else math.nan
    floats[t, _F_FEES] = fees
    floats[t, _F_PNL] = shares * (exit_price - entry_price) - fees
    floats[t, _F_RISK] = entry_price - stop
    return t + 1


@numba.njit(cache=True)
def _momentum_kernel(bounds, date_codes, open_, high, low, close, trail, tradable,
                     c_session, c_symbol, c_cursor, c_shares, c_entry, c_stop, c_heat_limit,
                     cash, rate, slippage, target_1_pct, target_2_pct, equity, ints,
                     floats):  # fmt: skip
    """Sessions in date order; returns the number of trade rows written. Per-symbol state (one
    position or waiting entry per symbol); ``active`` lists those symbols in acceptance order."""
    n_symbols = bounds.shape[0] - 1
    state = np.zeros(n_symbols, dtype=np.int8)
    cursor = np.zeros(n_symbols, dtype=np.int64)  # the symbol's last row reached
    bar = np.full(n_symbols, -1, dtype=np.int64)  # this session's tradable row, or -1
    plan_shares = np.zeros(n_symbols, dtype=np.int64)
    plan_risk = np.zeros(n_symbols)
    stop = np.zeros(n_symbols)
    entry_row = np.zeros(n_symbols, dtype=np.int64)
    entry_price = np.zeros(n_symbols)
    remaining = np.zeros(n_symbols, dtype=np.int64)
    third = np.zeros(n_symbols, dtype=np.int64)
    stage = np.zeros(n_symbols, dtype=np.int64)  # targets reached: 0, 1 or 2
    mark = np.zeros(n_symbols)
    trail_due = np.zeros(n_symbols, dtype=np.bool_)  # sell everything at the next tradable open
    active = np.empty(n_symbols, dtype=np.int64)
    n_active = 0
    t = 0
    c = 0
    n_cand = c_session.shape[0]
    for d in range(equity.shape[0]):
        for k in range(n_active):
            s = active[k]
            bar[s] = -1
            r = cursor[s] + 1
            if r < bounds[s + 1] and date_codes[r] == d:
                cursor[s] = r
                if tradable[r]:
                    bar[s] = r

        # The open: the trail's sells, then the waiting entries, which may spend their proceeds.
        for k in range(n_active):
            s = active[k]
            r = bar[s]
            if r >= 0 and state[s] == _HELD and trail_due[s]:
                price = exit_fill(open_[r], 1, slippage)
                cash += remaining[s] * price - commission(remaining[s], price, rate)
                t = _record(ints, floats, t, entry_row[s], entry_price[s], stop[s], remaining[s],
                            r, price, EXIT_TRAIL, rate)  # fmt: skip
                state[s] = _FLAT
        for k in range(n_active):
            s = active[k]
            r = bar[s]
            if r < 0 or state[s] != _PENDING:
                continue
            state[s] = _FLAT
            if not open_[r] > stop[s]:
                continue  # opened at or through the stop: the setup failed before the entry
            price = entry_fill(open_[r], 1, slippage)
            n = min(plan_shares[s], affordable_shares(cash, price, rate))
            if n <= 0:
                continue
            cash -= n * price + commission(n, price, rate)
            state[s] = _HELD
            entry_row[s] = r
            entry_price[s] = price
            remaining[s] = n
            third[s] = n // 3
            stage[s] = 0
            trail_due[s] = False

        # Inside the bar: the stop, or the next target (then the same bar may reach the one after).
        for k in range(n_active):
            s = active[k]
            r = bar[s]
            while r >= 0 and state[s] == _HELD:
                if stage[s] == 0:
                    target = entry_price[s] * (1.0 + target_1_pct)
                elif stage[s] == 1:
                    target = entry_price[s] * (1.0 + target_2_pct)
                else:
                    target = math.nan  # only the stop is left
                code, price = stop_or_target(open_[r], high[r], low[r], stop[s], target, 1)
                if code == EXIT_STOP:
                    cash += remaining[s] * price - commission(remaining[s], price, rate)
                    t = _record(ints, floats, t, entry_row[s], entry_price[s], stop[s],
                                remaining[s], r, price, EXIT_STOP, rate)  # fmt: skip
                    state[s] = _FLAT
                elif code == EXIT_TARGET:
                    stage[s] += 1
                    n = third[s]
                    if n > 0:
                        cash += n * price - commission(n, price, rate)
                        reason = EXIT_TARGET_1 if stage[s] == 1 else EXIT_TARGET_2
                        t = _record(ints, floats, t, entry_row[s], entry_price[s], stop[s], n, r,
                                    price, reason, rate)  # fmt: skip
                        remaining[s] -= n
                else:
                    break

        # The close: marks and the trail; drop the flat symbols and the entries that can never fill.
        value = cash
        m = 0
        for k in range(n_active):
            s = active[k]
            r = bar[s]
            if state[s] == _HELD:
                if r >= 0:
                    mark[s] = close[r]
                    if close[r] < trail[r]:  # NaN average: no signal
                        trail_due[s] = True
                value += remaining[s] * mark[s]
            elif state[s] == _PENDING and cursor[s] + 1 >= bounds[s + 1]:
                state[s] = _FLAT
            if state[s] != _FLAT:
                active[m] = s
                m += 1
        n_active = m
        equity[d] = value

        # The day's candidates, against the open risk and the heat limit at this close.
        heat = 0.0
        for k in range(n_active):
            s = active[k]
            if state[s] == _PENDING:
                heat += plan_risk[s]
            elif not trail_due[s]:
                heat += remaining[s] * max(0.0, entry_price[s] - stop[s])
        while c < n_cand and c_session[c] <= d:
            s = c_symbol[c]
            if c_session[c] == d and state[s] == _FLAT:
                risk = c_shares[c] * (c_entry[c] - c_stop[c])
                if heat + risk <= c_heat_limit[c] * value + _HEAT_TOLERANCE_DOLLARS:
                    heat += risk
                    state[s] = _PENDING
                    cursor[s] = c_cursor[c]
                    plan_shares[s] = c_shares[c]
                    plan_risk[s] = risk
                    stop[s] = c_stop[c]
                    active[n_active] = s
                    n_active += 1
            c += 1

    for k in range(n_active):  # still held at the end: open, marked at the last tradable close
        s = active[k]
        if state[s] == _HELD:
            t = _record(ints, floats, t, entry_row[s], entry_price[s], stop[s], remaining[s], -1,
                        mark[s], OPEN, rate)  # fmt: skip
    return t
