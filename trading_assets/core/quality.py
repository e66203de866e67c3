"""Data-quality rules for daily prices. Each function returns the offending rows, empty when clean.

The raw_prices asset checks call these on exactly the rows being stored, so a check's verdict is
about what is in the table, whatever IO manager stores it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# Adjusted prices are rescaled floats: 3,640 of the shared data's 2.87 M rows have low a hair above
# open/close (e.g. 1e-12 relative). A real inconsistency is far larger; 1e-6 of the close separates
# them (5 rows in the shared data, such as a ^VIX open of 2.58 against a low of 13.68).
OHLC_REL_TOLERANCE = 1e-6
# A one-session move of x3 (or /3) that goes back the next session is a bad tick, not a market move.
# x3 rather than x5 so that a x5 (or x10, x100) print is caught even on a day the true price fell
# 40 %; on the shared data (506 symbols, 2000-2025) x2.5 already flags no real move that reverts.
BAD_TICK_FACTOR = 3.0
# "Goes back": the next close is within this factor of the close before the spike.
BAD_TICK_REVERT_FACTOR = 2.0


def find_duplicates(prices: pd.DataFrame, key: Sequence[str] = ("symbol", "date")) -> pd.DataFrame:
    """Every row whose key occurs more than once."""
    dup = prices.duplicated(list(key), keep=False)
    return prices.loc[dup].sort_values(list(key))


def drop_duplicates(prices: pd.DataFrame, key: Sequence[str] = ("symbol", "date")) -> pd.DataFrame:
    """Keep the last row per key: the bar the source served last (Yahoo repeats the latest bar)."""
    return prices.drop_duplicates(list(key), keep="last").reset_index(drop=True)


def find_ohlc_violations(prices: pd.DataFrame, rel_tol: float = OHLC_REL_TOLERANCE) -> pd.DataFrame:
    """Rows breaking low <= open, close <= high; prices > 0; volume >= 0 (null volume is allowed: indices)."""
    o, h, lo, c = (prices[col].to_numpy(dtype=float) for col in ("open", "high", "low", "close"))
    v = prices["volume"].to_numpy(dtype=float)
    tol = rel_tol * np.abs(np.nan_to_num(c, nan=0.0))
    with np.errstate(invalid="ignore"):
        reasons = {
            "low>open": lo - o > tol,
            "low>close": lo - c > tol,
            "open>high": o - h > tol,
            "close>high": c - h > tol,
            "low>high": lo - h > tol,
            "price<=0": (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0),
            "price_nan": np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c),
            "volume<0": v < 0,
        }
    bad = np.zeros(len(prices), dtype=bool)
    for mask in reasons.values():
        bad |= mask
    out = prices.loc[bad].copy()
    out["violation"] = [
        ",".join(name for name, mask in reasons.items() if mask[i]) for i in np.flatnonzero(bad)
    ]
    return out




def find_missing_sessions(
    prices: pd.DataFrame,
    universe: Iterable[str],
    sessions: Sequence[dt.date],
) -> pd.DataFrame:
    """(symbol, date) pairs the universe and calendar expect but ``prices`` lacks.

    A symbol is expected from its first row on (a later listing is not "missing" before it listed);
    a universe symbol with no row at all is missing on every session. Rows off the calendar are ignored.
    """
    sessions = sorted(set(sessions))
    if not sessions:
        return pd.DataFrame({"symbol": pd.Series(dtype=object), "date": pd.Series(dtype=object)})
    universe = list(dict.fromkeys(universe))
    have = prices[["symbol", "date"]]
    first = have.groupby("symbol")["date"].min().to_dict()
    sess_index = pd.Index(sessions)
    missing: list[pd.DataFrame] = []
    by_symbol = {s: set(g) for s, g in have.groupby("symbol")["date"]}
    for sym in universe:
        start = first.get(sym, sessions[0])
        expected = sess_index[sess_index >= start]
        got = by_symbol.get(sym, set())
        lacking = [d for d in expected if d not in got]
        if lacking:
            missing.append(pd.DataFrame({"symbol": sym, "date": lacking}))
    if not missing:
        return pd.DataFrame({"symbol": pd.Series(dtype=object), "date": pd.Series(dtype=object)})
    return pd.concat(missing, ignore_index=True)
