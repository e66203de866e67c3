"""Quarantine: which delivered bars are kept out of every calculation, and why.

A bad bar is stored as delivered, with its reason in the ``quarantine`` column of raw_prices, and
everything downstream treats it as a missing session. Reasons (comma-joined when several):

- the OHLC rules of :func:`trading_assets.core.quality.find_ohlc_violations` (``low>open``,
  ``close>high``, ``price<=0``, ``price_nan``, ``volume<0``, ...): judged on the bar alone;
- ``bad_tick``: the close moves x``BAD_TICK_FACTOR`` (or /) against the last clean close and the
  next bar goes back within x``BAD_TICK_REVERT_FACTOR`` of that clean close;
- ``spike_unconfirmed``: the same move on a symbol's newest bar, whose next bar does not exist yet.
  It is kept out until the next session's run judges it: ``bad_tick`` if the price went back, clean
  (and then used, with the sessions it touched recomputed) if the move held.

The judgement of a bar depends only on the bars before it (through "the last clean close") and on
the one after it, so judging a history bar by bar as sessions arrive gives exactly what judging
the whole history at once gives: a daily run reaches the backfill's verdict.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from trading_assets.core import quality
from trading_assets.core.quality import BAD_TICK_FACTOR, BAD_TICK_REVERT_FACTOR

QUARANTINE_COLUMN = "quarantine"
BAD_TICK = "bad_tick"
SPIKE_UNCONFIRMED = "spike_unconfirmed"
# Reasons after which the bar's close itself cannot be trusted (an index such as ^VIX whose only
# fault is a stale open still has a usable close for the market environment).
CLOSE_REASONS = ("close", "price", BAD_TICK, SPIKE_UNCONFIRMED)

_CLEAN, _OHLC, _TICK, _UNCONFIRMED, _KEEP = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def _judge_closes(starts, close, ohlc_bad, fixed_code, factor, revert):  # pragma: no cover - numba
    n = close.shape[0]
    code = np.zeros(n, dtype=np.int8)
    for b in range(starts.shape[0] - 1):
        ref = np.nan
        for i in range(starts[b], starts[b + 1]):
            if ohlc_bad[i]:
                code[i] = _OHLC
                continue
            if fixed_code[i] >= 0:  # a verdict already stored and final
                code[i] = fixed_code[i]
                if fixed_code[i] == _CLEAN:
                    ref = close[i]
                continue
            if np.isnan(ref):
                ref = close[i]
                continue
            jump = close[i] / ref
            if jump >= factor or jump <= 1.0 / factor:
                j = i + 1
                while j < starts[b + 1] and ohlc_bad[j]:
                    j += 1
                if j == starts[b + 1]:
                    code[i] = _UNCONFIRMED
                else:
                    back = close[j] / ref
                    if back <= revert and back >= 1.0 / revert:
                        code[i] = _TICK
                    else:
                        ref = close[i]  # the move held: a real move
            else:
                ref = close[i]
    return code


def judge_bars(
    prices: pd.DataFrame,
    *,
    final: pd.Series | None = None,
    factor: float = BAD_TICK_FACTOR,
    revert_factor: float = BAD_TICK_REVERT_FACTOR,
) -> pd.Series:
    """The quarantine reason of every row (None when clean), aligned with ``prices``' index.

    ``final`` (bool per row) marks rows whose stored verdict, in ``prices['quarantine']``, is kept
    as it is: bars judged by an earlier run that already saw their next bar. The rows of one symbol
    are judged in date order.
    """
    if prices.empty:
        return pd.Series([], index=prices.index, dtype=object, name=QUARANTINE_COLUMN)
    order = np.lexsort((prices["date"].to_numpy(), prices["symbol"].to_numpy()))
    frame = prices.iloc[order]
    violations = quality.find_ohlc_violations(frame)
    reasons = pd.Series(None, index=frame.index, dtype=object)
    reasons.loc[violations.index] = violations["violation"]
    ohlc_bad = reasons.notna().to_numpy()
    fixed = np.full(len(frame), -1, dtype=np.int8)
    if final is not None:
        keep = final.reindex(frame.index).fillna(False).to_numpy(dtype=bool)
        stored = frame[QUARANTINE_COLUMN] if QUARANTINE_COLUMN in frame else None
        stored_code = (
            np.where(stored.isna().to_numpy(), _CLEAN, _KEEP)
            if stored is not None
            else np.full(len(frame), _CLEAN)
        )
        fixed[keep] = stored_code[keep]
    symbols = frame["symbol"].to_numpy()
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1], True])
    code = _judge_closes(
        starts.astype(np.int64),
        frame["close"].to_numpy(dtype=np.float64),
        ohlc_bad,
        fixed,
        float(factor),
        float(revert_factor),
    )
    reasons[code == _TICK] = BAD_TICK
    reasons[code == _UNCONFIRMED] = SPIKE_UNCONFIRMED
    if final is not None and QUARANTINE_COLUMN in frame:
        kept = code == _KEEP
        reasons[kept] = frame.loc[kept, QUARANTINE_COLUMN]
    return reasons.reindex(prices.index).rename(QUARANTINE_COLUMN)


def close_is_usable(quarantine: pd.Series) -> pd.Series:
    """True where the bar's close can be used although the bar may be quarantined (e.g. a bad open)."""
    text = quarantine.fillna("").astype(str)
    bad = np.zeros(len(text), dtype=bool)
    for reason in CLOSE_REASONS:
        bad |= text.str.contains(reason, regex=False).to_numpy()
    return pd.Series(~bad, index=quarantine.index)


def quarantined(prices: pd.DataFrame) -> pd.DataFrame:
    """The quarantined rows of a raw_prices frame, for check metadata."""
    if QUARANTINE_COLUMN not in prices:
        return prices.iloc[:0]
    return prices[prices[QUARANTINE_COLUMN].notna()]
