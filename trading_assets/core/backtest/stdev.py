"""The STDEV tactic: z-score mean reversion (MR) and trend continuation (TC), long and short, one
independent sleeve of ``equity / n_symbols`` per symbol.

Each session's close is judged on the symbol's own bar, with the thresholds of that session
(params x the session's threshold multipliers, multipliers.py). A session is judged only when
zscore_20, ema_slope_20, atr_14 and atr_pct_rank_252 are all known and the bar is tradable (open,
high, low, close finite and > 0); otherwise nothing changes that session. Two arms are kept per
symbol, one per setup:

- MR arms long after a low (z <= -mr_arm) and short after a high (z >= +mr_arm). A later extreme on
  the other side re-arms it the other way; otherwise it persists until it triggers: when z comes
  back to |z| <= mr_trigger.
- TC arms long when z >= +tc_arm with ema_slope_20 > 0, short when z <= -tc_arm with slope < 0. It
  disarms when the slope no longer has its sign (flipped, or exactly 0) or when z reaches the
  other extreme (|z| >= tc_arm against it). Otherwise it persists until it triggers: the pull-back
  to |z| <= tc_trigger with the slope still of its sign.

Order within a session: the slope check and the triggers of the arms held before the session
first, then arming from the session's z (so arming and triggering take two sessions). When both
setups trigger on one session, TC wins: trade with the trend (the MR signal against it - the
common case, both arming on the same extreme - is the counter-trend fade a trend follower
declines); its setup label is TC. Triggered arms are used up either way. A trigger when
atr_pct_rank_252 > atr_percentile_cap is suppressed (no entry, the triggered arms are used up:
back to idle). An entry clears both arms; while in a trade nothing arms, and judging resumes at the
close of the exit bar.

Execution: the entry is a market order at the next tradable bar's open, slippage against the
trader. Shares = floor(max_risk_per_trade x sleeve equity / (atr_multiplier_sl x atr_14 of the
signal session)), capped at what the sleeve's equity buys (or shorts) with commission, so a
position never exceeds the sleeve. None means no trade. The stop is placed atr_multiplier_sl x
atr_14 (of the signal session) from the actual fill, against the trade, and the target
min_rr_ratio x that risk from the fill, with the trade. Exits are the stop and the target only,
checked from the entry bar on (fills.stop_or_target: a gap through fills at the open, a bar
reaching both is the stop). A short's sale proceeds are credited to cash; its equity is
cash - shares x close. R = pnl / (shares x atr_multiplier_sl x atr_14).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trading_assets.core.backtest.bars import Bars
from trading_assets.core.backtest.fills import (
    OPEN,
    affordable_shares,
    commission,
    entry_fill,
    stop_or_target,
)
from trading_assets.core.backtest.ledger import (
    SETUP_MR,
    SETUP_NONE,
    SETUP_TC,
    TradeRecords,
    allocate_records,
    compact_records,
)
from trading_assets.core.backtest.params import StdevParams
from trading_assets.core.backtest.sleeves import tradable_bars

STDEV_COLUMNS: tuple[str, ...] = ("zscore_20", "ema_slope_20", "atr_14", "atr_pct_rank_252")
# Rows of the per-session threshold array (multipliers.MULTIPLIER_COLUMNS' order).
_MR_ARM, _MR_TRIGGER, _TC_ARM, _TC_TRIGGER = 0, 1, 2, 3


def run_stdev_sleeves(
    bars: Bars,
    params: StdevParams,
    multipliers: np.ndarray,
    *,
    start_cash: float,
    commission_rate: float,
    slippage_rate: float,
    vetoed: np.ndarray | None = None,
) -> tuple[TradeRecords, np.ndarray]:
    """Trade every symbol's stdev sleeve; ``multipliers`` is (4, n_sessions) as
    multipliers.multipliers_by_session. ``vetoed`` (bool per bars row, optional): a signal on
    such a row is suppressed as the ATR cap suppresses one (no entry, the triggered arms used
    up). Returns the trades and each row's sleeve equity."""
    if vetoed is None:
        vetoed = np.zeros(bars.n_rows, dtype=np.bool_)
    base = np.array([params.mr_arm_z, params.mr_trigger_z, params.tc_arm_z, params.tc_trigger_z])
    thresholds = np.ascontiguousarray(base[:, None] * multipliers)
    records = allocate_records(bars.n_rows)
    sleeve_equity = np.empty(bars.n_rows)
    counts = np.zeros(bars.n_symbols, dtype=np.int64)
    _stdev_sleeves(
        bars.bounds,
        bars.date_codes,
        *(bars.column(c) for c in ("open", "high", "low", "close")),
        *(bars.column(c) for c in STDEV_COLUMNS),
        tradable_bars(bars),
        np.ascontiguousarray(vetoed, dtype=np.bool_),
        thresholds,
        params.atr_percentile_cap,
        params.atr_multiplier_sl,
        params.min_rr_ratio,
        params.max_risk_per_trade,
        float(start_cash),
        commission_rate,
        slippage_rate,
        sleeve_equity,
        counts,
        *(getattr(records, f) for f in TradeRecords.__dataclass_fields__),
    )
    return compact_records(records, bars.bounds[:-1], counts), sleeve_equity


@numba.njit(cache=True, parallel=True)
def _stdev_sleeves(bounds, date_codes, open_, high, low, close, z, slope, atr, atr_rank, tradable,
                   vetoed, thresholds, atr_cap, atr_mult, rr, max_risk, start_cash, commission_rate,
                   slippage_rate, sleeve_equity, counts, entry_row, exit_row, side, setup,
                   exit_reason, shares, entry_price, exit_price, fees, pnl, risk_per_share):  # fmt: skip
    # Symbol k writes its trades into slots bounds[k].. (at most one entry per row).
    for k in numba.prange(bounds.shape[0] - 1):
        counts[k] = _one_sleeve(
            bounds[k], bounds[k + 1], date_codes, open_, high, low, close, z, slope, atr,
            atr_rank, tradable, vetoed, thresholds, atr_cap, atr_mult, rr, max_risk, start_cash,
            commission_rate, slippage_rate, sleeve_equity, entry_row, exit_row, side, setup,
            exit_reason, shares, entry_price, exit_price, fees, pnl, risk_per_share,
        )  # fmt: skip


@numba.njit(cache=True)
def _one_sleeve(s, e, date_codes, open_, high, low, close, z, slope, atr, atr_rank, tradable,
                vetoed, thresholds, atr_cap, atr_mult, rr, max_risk, cash, commission_rate,
                slippage_rate, sleeve_equity, entry_row, exit_row, side, setup, exit_reason,
                shares, entry_price, exit_price, fees, pnl, risk_per_share):  # fmt: skip
    mr_arm = 0  # +1 armed long (after a low), -1 armed short (after a high), 0 idle
    tc_arm = 0  # +1 armed long (up-trend extreme), -1 armed short
    pending = 0  # side of an entry order waiting for the next tradable open
    pending_setup = SETUP_NONE
    pending_risk = math.nan  # atr_multiplier_sl x atr_14 of the signal session
    position = 0  # side held
    held = 0
    stop = target = math.nan
    last_close = math.nan
    t = s  # the current trade's slot
    for i in range(s, e):
        if not tradable[i]:
            sleeve_equity[i] = cash + position * held * last_close if held > 0 else cash
            continue
        if pending != 0:
            fill = entry_fill(open_[i], pending, slippage_rate)
            # Flat, so cash is the sleeve's equity; the risk budget's shares, capped at what it buys.
            n = affordable_shares(cash, fill, commission_rate)
            budget = math.floor(max_risk * cash / pending_risk) if pending_risk > 0.0 else 0.0
            if budget < n:
                n = int(budget)
            if n > 0:
                fee = commission(n, fill, commission_rate)
                cash -= pending * n * fill + fee
                position, held = pending, n
                stop = fill - pending * pending_risk
                target = fill + pending * rr * pending_risk
                entry_row[t] = i
                side[t] = pending
                setup[t] = pending_setup
                shares[t] = n
                entry_price[t] = fill
                fees[t] = fee
                risk_per_share[t] = pending_risk
            pending = 0
        if position != 0:
            reason, fill = stop_or_target(open_[i], high[i], low[i], stop, target, position)
            if reason != OPEN:
                fee = commission(held, fill, commission_rate)
                cash += position * held * fill - fee
                exit_row[t] = i
                exit_price[t] = fill
                exit_reason[t] = reason
                fees[t] += fee
                pnl[t] = position * held * (fill - entry_price[t]) - fees[t]
                position, held = 0, 0
                t += 1
        last_close = close[i]
        if position == 0 and not (
            math.isnan(z[i])
            or math.isnan(slope[i])
            or math.isnan(atr[i])
            or math.isnan(atr_rank[i])
        ):
            d = date_codes[i]
            zi, si = z[i], slope[i]
            # 1. The slope check and the triggers of the arms held before this session.
            if tc_arm != 0 and not (si * tc_arm > 0.0):
                tc_arm = 0
            mr_fire = mr_arm if (mr_arm != 0 and abs(zi) <= thresholds[_MR_TRIGGER, d]) else 0
            tc_fire = tc_arm if (tc_arm != 0 and abs(zi) <= thresholds[_TC_TRIGGER, d]) else 0
            if mr_fire != 0:
                mr_arm = 0
            if tc_fire != 0:
                tc_arm = 0
            go = tc_fire if tc_fire != 0 else mr_fire  # TC wins: trade with the trend
            if go != 0 and atr_rank[i] <= atr_cap and not vetoed[i]:
                pending = go
                pending_setup = SETUP_TC if tc_fire != 0 else SETUP_MR
                pending_risk = atr_mult * atr[i]
                mr_arm = 0
                tc_arm = 0
            else:
                # 2. Arming from this session's z.
                mr_level, tc_level = thresholds[_MR_ARM, d], thresholds[_TC_ARM, d]
                if zi <= -mr_level:
                    mr_arm = 1
                elif zi >= mr_level:
                    mr_arm = -1
                if zi >= tc_level:
                    tc_arm = 1 if si > 0.0 else (0 if tc_arm == -1 else tc_arm)
                elif zi <= -tc_level:
                    tc_arm = -1 if si < 0.0 else (0 if tc_arm == 1 else tc_arm)
        sleeve_equity[i] = cash + position * held * last_close if held > 0 else cash
    if held > 0:  # still open: marked at the last tradable close
        exit_row[t] = -1
        exit_price[t] = math.nan
        exit_reason[t] = OPEN
        pnl[t] = position * held * (last_close - entry_price[t]) - fees[t]
        t += 1
    return t - s
