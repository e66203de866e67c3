"""Corporate actions seen as changed history: compare stored bars with the same bars fetched again.

Adjusted prices (yfinance ``auto_adjust=True``, a Yahoo export scaled by ``Adj Close``) restate the
whole history before every split and dividend. So each fetch also reads ``OVERLAP_SESSIONS``
sessions before its window and compares them with what is stored:

- **adjustment**: the earliest compared session differs. A change that reaches back to the start
  of the overlap means the history before it changed too (a split, a dividend, a re-adjusted
  export): the symbol's whole history is fetched again and replaces the stored one.
  ``factor`` = fresh close / stored close on that session (0.25 for a 4:1 split).
- **revision**: only later sessions of the overlap differ (a late volume print, a corrected bar):
  those bars are replaced from the first that differs; older history is untouched.

Differences within ``ADJUSTMENT_REL_TOLERANCE`` (float noise of re-scaled prices) are no change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_assets.core.prices import OHLCV_COLUMNS

# Stored sessions before a window that every fetch reads again and compares.
OVERLAP_SESSIONS = 5
# Relative difference below which two prices (or volumes) are the same number.
ADJUSTMENT_REL_TOLERANCE = 1e-6

ADJUSTMENT = "adjustment"
REVISION = "revision"
CHANGE_COLUMNS = (
    "symbol",
    "kind",
    "first_changed",
    "factor",
    "sessions_compared",
    "sessions_changed",
)


def _differs(fresh: np.ndarray, stored: np.ndarray, rel_tol: float) -> np.ndarray:
    both_nan = np.isnan(fresh) & np.isnan(stored)
    scale = np.maximum(np.abs(stored), np.abs(fresh))
    with np.errstate(invalid="ignore"):
        far = np.abs(fresh - stored) > rel_tol * scale
    return ~both_nan & (far | (np.isnan(fresh) != np.isnan(stored)))


def find_history_changes(
    stored: pd.DataFrame, fresh: pd.DataFrame, rel_tol: float = ADJUSTMENT_REL_TOLERANCE
) -> pd.DataFrame:
    """One row per symbol whose fresh bars differ from the stored ones on the sessions both have.

    Columns CHANGE_COLUMNS. ``kind`` is ADJUSTMENT when the earliest common session differs (the
    history before it changed too), else REVISION from ``first_changed``.
    """
    keys = ["symbol", "date"]
    both = stored[[*keys, *OHLCV_COLUMNS]].merge(
        fresh[[*keys, *OHLCV_COLUMNS]], on=keys, suffixes=("_stored", "_fresh")
    )
    if both.empty:
        return pd.DataFrame({c: [] for c in CHANGE_COLUMNS})
    changed = np.zeros(len(both), dtype=bool)
    for col in OHLCV_COLUMNS:
        changed |= _differs(
            both[f"{col}_fresh"].to_numpy(dtype=float),
            both[f"{col}_stored"].to_numpy(dtype=float),
            rel_tol,
        )
    both["changed"] = changed
    both = both.sort_values(keys)
    rows = []
    for symbol, group in both.groupby("symbol", sort=True):
        if not group["changed"].any():
            continue
        first = group.iloc[0]
        kind = ADJUSTMENT if first["changed"] else REVISION
        ref = first if kind == ADJUSTMENT else group[group["changed"]].iloc[0]
        factor = ref["close_fresh"] / ref["close_stored"] if ref["close_stored"] else np.nan
        rows.append(
            {
                "symbol": symbol,
                "kind": kind,
                "first_changed": group.loc[group["changed"], "date"].iloc[0],
                "factor": float(factor),
                "sessions_compared": len(group),
                "sessions_changed": int(group["changed"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))


def restatement_plan(
    revisions: pd.DataFrame | None, window_start
) -> tuple[list[str], object | None]:
    """From a window's price_revisions rows: (symbols whose whole history was re-adjusted, the
    earliest date before ``window_start`` from which every symbol's rows must be recomputed because
    a bar was revised or re-judged, or None)."""
    if revisions is None or revisions.empty:
        return [], None
    adjusted = sorted(revisions.loc[revisions["kind"] == ADJUSTMENT, "symbol"].unique())
    others = revisions.loc[revisions["kind"] != ADJUSTMENT, "restate_from"]
    earliest = min(others) if len(others) else None
    return adjusted, (earliest if earliest is not None and earliest < window_start else None)
