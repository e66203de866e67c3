"""Watchlist screen: which stocks are worth a trade today, and how big (issue 3, section 3).

A stock (benchmarks excluded) is judged on each session against five criteria, each recorded as
'pass', 'fail' or 'unknown' (the input is NaN/null, or the stock has no known market cap):

- ``crit_rs_rating``: rs_rating >= 80;
- ``crit_avg_volume``: vol_avg_50 >= 500,000 shares;
- ``crit_above_sma_50`` / ``crit_above_sma_200``: close strictly above the 50- / 200-day SMA;
- ``crit_market_cap``: market cap >= $1B, from the fundamentals snapshots (symbol, market_cap,
  as_of): for each session the stock's latest snapshot dated at or before that session (an as-of
  join), so a backtest never sees a size from its future. A session before the stock's first
  snapshot, or whose latest snapshot has no cap for it, has an unknown cap. ``market_cap_as_of``
  says which snapshot was used.

A stock passes the screen when the first four are 'pass' and the market cap is 'pass', or 'unknown'
while ``ScreenParams.require_known_market_cap`` is False (the default: snapshots are sparse, often
none for early years, so a missing cap is flagged, not disqualifying). An 'unknown' is never a
silent pass on any other criterion. Passing stocks are then sized (sizing.py) with their session's
environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trading_assets.core.frames import reject_duplicate_keys, require_columns
from trading_assets.core.sizing import (
    DEFAULT_SIZING_PARAMS,
    EDGE_INPUT_COLUMNS,
    PLAN_COLUMNS,
    SizingParams,
    count_edges,
    plan_positions,
)
from trading_assets.core.symbols import BENCHMARK_SYMBOLS

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"

CRITERIA: tuple[str, ...] = (
    "crit_rs_rating",
    "crit_avg_volume",
    "crit_above_sma_50",
    "crit_above_sma_200",
    "crit_market_cap",
)

SCREEN_INPUT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        ("symbol", "date", "close", "rs_rating", "vol_avg_50", "sma_50", "sma_200", "atr_14")
        + EDGE_INPUT_COLUMNS
    )
)
ENVIRONMENT_INPUT_COLUMNS: tuple[str, ...] = (
    "date",
    "environment",
    "base_size",
    "risk_pct",
    "heat_limit",
)

WATCHLIST_COLUMNS: tuple[str, ...] = (
    "symbol",
    "date",
    "close",
    "rs_rating",
    "market_cap",
    "market_cap_as_of",
    "environment",
    *CRITERIA,
    "criteria_passed",
    "edges",
    "edges_raw",
    "base_size",
    "risk_pct",
    "heat_limit",
    "atr_14",
    *PLAN_COLUMNS,
)


class ScreenInputError(ValueError):
    """A screen input is malformed: missing columns, duplicated rows or non-numeric market caps."""


@dataclass(frozen=True)
class ScreenParams:
    """Screen cut-offs (issue 3, section 3), overridable one by one."""

    min_rs_rating: float = 80.0
    min_avg_volume: float = 500_000.0
    min_market_cap: float = 1_000_000_000.0
    # False: a stock with no known market cap stays on the watchlist, flagged crit_market_cap='unknown'.
    require_known_market_cap: bool = False

    def __post_init__(self) -> None:
        for name in ("min_rs_rating", "min_avg_volume", "min_market_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ScreenInputError(
                    f"{name} must be a finite non-negative number, got {value!r}"
                )


DEFAULT_SCREEN_PARAMS = ScreenParams()


def evaluate_criteria(
    indicators: pd.DataFrame,
    fundamentals: pd.DataFrame | None = None,
    params: ScreenParams = DEFAULT_SCREEN_PARAMS,
) -> pd.DataFrame:
    """Every stock row (benchmarks dropped): SCREEN_INPUT_COLUMNS, market_cap, market_cap_as_of,
    one CRITERIA column each, ``criteria_passed`` (count of 'pass', 0-5) and ``passes_screen`` (bool)."""
    positions, cap, cap_as_of, codes, passes = _judge(indicators, fundamentals, params)
    return _labelled_rows(indicators, positions, cap, cap_as_of, codes, passes)


def screen_watchlist(
    indicators: pd.DataFrame,
    environment: pd.DataFrame,
    fundamentals: pd.DataFrame | None = None,
    params: ScreenParams = DEFAULT_SCREEN_PARAMS,
    sizing: SizingParams = DEFAULT_SIZING_PARAMS,
) -> pd.DataFrame:
    """The watchlist: per session, the stocks passing the screen, with their edges and sized plan.

    ``environment`` is compute_market_environment's frame (date, environment, base_size, risk_pct,
    heat_limit); a session absent there or with a null environment is listed but left unsized
    (sizing_status 'unsized: environment missing'). Sorted by date, then rs_rating descending,
    then symbol: the order in which heat is allocated.
    """
    _require(environment, ENVIRONMENT_INPUT_COLUMNS, "environment")
    _no_duplicates(environment, ["date"], "environment")
    positions, cap, cap_as_of, codes, passes = _judge(indicators, fundamentals, params)
    # Materialise only the passing rows: the full universe x history is millions of rows.
    passing = _labelled_rows(
        indicators,
        positions[passes],
        cap[passes],
        cap_as_of[passes],
        codes[passes],
        passes[passes],
    )
    edges = count_edges(passing, sizing)
    passing = passing.join(edges)
    # Join on a datetime64 key so a DATE read back as datetime64 on one side and as
    # datetime.date on the other still matches.
    env = environment[list(ENVIRONMENT_INPUT_COLUMNS)].rename(columns={"date": "_env_date"})
    env["_session"] = pd.to_datetime(env.pop("_env_date"))
    passing["_session"] = pd.to_datetime(passing["date"])
    merged = passing.merge(env, on="_session", how="left", validate="many_to_one")
    merged = merged.drop(columns="_session")
    planned = plan_positions(merged, sizing)
    planned["_rs"] = pd.to_numeric(planned["rs_rating"], errors="coerce").astype("float64")
    planned = planned.sort_values(
        ["date", "_rs", "symbol"], ascending=[True, False, True], na_position="last", kind="stable"
    )
    return planned[list(WATCHLIST_COLUMNS)].reset_index(drop=True)


def _caps_for(
    symbols: np.ndarray, dates: pd.Series, fundamentals: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the market cap of the symbol's latest snapshot at or before the row's session, and
    that snapshot's as_of (NaN / NaT where none). Snapshots without a cap for a symbol are skipped:
    they say nothing about it, so an older known cap still applies."""
    caps = np.full(len(symbols), np.nan)
    as_of = np.full(len(symbols), np.datetime64("NaT"), dtype="datetime64[D]")
    if fundamentals is None:
        return caps, as_of
    _require(fundamentals, ("symbol", "market_cap", "as_of"), "fundamentals")
    _no_duplicates(fundamentals, ["symbol", "as_of"], "fundamentals")
    values = pd.to_numeric(fundamentals["market_cap"], errors="coerce")
    bad = values.isna() & fundamentals["market_cap"].notna()
    if bad.any():
        shown = fundamentals.loc[bad, ["symbol", "market_cap"]].head(5).to_dict("records")
        raise ScreenInputError(f"non-numeric market_cap in fundamentals, e.g. {shown}")
    snap_days = _days(fundamentals["as_of"], "fundamentals as_of")
    known = values.notna().to_numpy() & ~np.isnat(snap_days)
    if not known.any() or not len(symbols):
        return caps, as_of
    # One integer key per (symbol, day), symbol-major: a binary search for a row's key lands on
    # its symbol's latest snapshot day <= the session, or on another symbol (then: none).
    snap_symbols = fundamentals["symbol"].to_numpy()[known]
    codes, names = pd.factorize(snap_symbols)
    row_codes = pd.Index(names).get_indexer(symbols)
    snap_key = codes.astype("int64") * _DAY_SPAN + snap_days[known].astype("int64")
    order = np.argsort(snap_key, kind="stable")
    snap_key, snap_codes = snap_key[order], codes[order]
    snap_caps = values.to_numpy(dtype="float64")[known][order]
    snap_as_of = snap_days[known][order]
    row_days = _days(dates, "indicators date")
    row_key = row_codes.astype("int64") * _DAY_SPAN + row_days.astype("int64")
    hit = np.searchsorted(snap_key, row_key, side="right") - 1
    ok = (row_codes >= 0) & ~np.isnat(row_days) & (hit >= 0)
    ok[ok] &= snap_codes[hit[ok]] == row_codes[ok]
    caps[ok] = snap_caps[hit[ok]]
    as_of[ok] = snap_as_of[hit[ok]]
    return caps, as_of


# Days are offsets from 1970 well inside +-2**31; one symbol's days never reach the next's.
_DAY_SPAN = np.int64(2**32)


def _days(values: pd.Series, what: str) -> np.ndarray:
    """Dates (datetime.date, datetime64 or ISO text) as datetime64[D], converted once per distinct value."""
    codes, uniques = pd.factorize(values)
    try:
        days = pd.to_datetime(pd.Index(uniques)).to_numpy().astype("datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise ScreenInputError(f"{what} holds values that are not dates: {exc}") from exc
    return np.append(days, np.datetime64("NaT"))[codes]  # factorize marks missing as -1


_FAIL_CODE, _PASS_CODE, _UNKNOWN_CODE = 0, 1, 2
_LABELS = np.array([FAIL, PASS, UNKNOWN], dtype=object)


def _judge(
    indicators: pd.DataFrame, fundamentals: pd.DataFrame | None, params: ScreenParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Work on plain arrays; the wide frame is only sliced once, for the rows a caller keeps.

    Returns the stock rows' positions in ``indicators``, their market caps and the as_of of the
    snapshot each came from, a (rows x CRITERIA) int8 code matrix and the pass mask.
    """
    _require(indicators, SCREEN_INPUT_COLUMNS, "indicators")
    _no_duplicates(indicators, ["symbol", "date"], "indicators")
    positions = np.flatnonzero(~indicators["symbol"].isin(BENCHMARK_SYMBOLS).to_numpy())

    def column(name: str) -> np.ndarray:
        return _float(indicators[name]).to_numpy()[positions]

    close, rs, volume = column("close"), column("rs_rating"), column("vol_avg_50")
    sma_50, sma_200 = column("sma_50"), column("sma_200")
    cap, cap_as_of = _caps_for(
        indicators["symbol"].to_numpy()[positions],
        indicators["date"].iloc[positions],
        fundamentals,
    )
    # Same order as CRITERIA.
    codes = np.column_stack(
        [
            _code(rs >= params.min_rs_rating, ~np.isnan(rs)),
            _code(volume >= params.min_avg_volume, ~np.isnan(volume)),
            _code(close > sma_50, ~np.isnan(close) & ~np.isnan(sma_50)),
            _code(close > sma_200, ~np.isnan(close) & ~np.isnan(sma_200)),
            _code(cap >= params.min_market_cap, ~np.isnan(cap)),
        ]
    ).reshape(len(positions), len(CRITERIA))
    cap_ok = codes[:, -1] == _PASS_CODE
    if not params.require_known_market_cap:
        cap_ok |= codes[:, -1] == _UNKNOWN_CODE
    passes = (codes[:, :-1] == _PASS_CODE).all(axis=1) & cap_ok
    return positions, cap, cap_as_of, codes, passes


def _labelled_rows(
    indicators: pd.DataFrame,
    positions: np.ndarray,
    cap: np.ndarray,
    cap_as_of: np.ndarray,
    codes: np.ndarray,
    passes: np.ndarray,
) -> pd.DataFrame:
    """The chosen rows' SCREEN_INPUT_COLUMNS plus market_cap (and the as_of date it was known on:
    a DATE, None where unknown), the criteria labels and the summary."""
    col_idx = [indicators.columns.get_loc(c) for c in SCREEN_INPUT_COLUMNS]
    rows = indicators.iloc[positions, col_idx]
    rows.index = pd.RangeIndex(len(rows))
    as_of = np.where(np.isnat(cap_as_of), None, cap_as_of.astype(object))
    labelled: dict[str, object] = {"market_cap": cap, "market_cap_as_of": as_of}
    labelled.update({name: _LABELS[codes[:, j]] for j, name in enumerate(CRITERIA)})
    labelled["criteria_passed"] = (codes == _PASS_CODE).sum(axis=1).astype("int64")
    labelled["passes_screen"] = passes.astype(bool)
    return rows.assign(**labelled)


def _code(passed: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.where(known, np.where(passed, _PASS_CODE, _FAIL_CODE), _UNKNOWN_CODE).astype("int8")


def _float(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _require(frame: pd.DataFrame, columns, what: str) -> None:
    require_columns(frame, columns, what, ScreenInputError)


def _no_duplicates(frame: pd.DataFrame, keys: list[str], what: str) -> None:
    reject_duplicate_keys(frame, keys, what, ScreenInputError)
