"""Market environment A/B/C/D: how hard to press, from SPY, QQQ, breadth and the VIX (issue 3, section 2).

One row per session. The environment is the FIRST rule that holds, in order:

- **A**: SPY and QQQ both above their 50- and 200-day SMAs, breadth >= 70 % and VIX <= 25;
- **B**: SPY and QQQ both above their 50-day SMA, breadth >= 50 % and VIX <= 30;
- **C**: breadth >= 30 % and VIX <= 35;
- **D**: otherwise.

"Above" is strictly greater; the breadth and VIX bounds are inclusive, as the rule is written.
Breadth is the percentage (0-100) of the universe's stocks (benchmarks excluded) whose close is above
their own 50-day SMA; stocks without a SMA 50 yet are left out of numerator and denominator.

Missing data is never a silent D. Each session carries two diagnostic columns:

- ``missing_inputs``: what the rules need but the data lacks: a SPY/QQQ/^VIX row or close, a SMA that
  should exist (the symbol already has at least that many closes in the frame) but is NaN, or breadth
  (no stock with both close and SMA 50 that day). Any missing input -> ``environment`` is null and the
  sizing columns are NaN. ``missing_benchmark_sessions`` lists the sessions the blocking check fails on.
- ``warmup_inputs``: benchmark SMAs still in warm-up (fewer closes in the frame than the window). A
  condition needing such a SMA does not hold (SPY with no SMA 200 yet cannot be A), and the session is
  classified with the other rules. This only happens at the very start of the history. (Warm-up is
  judged from the closes present in the frame, so pass the indicators from the symbol's first
  session, or rows whose SMAs were computed with their look-back: a sliced frame whose first rows
  lack a SMA would read as warm-up rather than missing.)

Sessions are the dates on which any symbol other than ^VIX has a row: the VIX has a few CBOE-only dates
on which the stock market was closed, and those are not sessions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from trading_assets.core.frames import reject_duplicate_keys, require_columns
from trading_assets.core.symbols import BENCHMARK_SYMBOLS

SPY, QQQ, VIX = "SPY", "QQQ", "^VIX"
ENVIRONMENTS: tuple[str, ...] = ("A", "B", "C", "D")

# Sessions of closes a SMA needs before it exists (min_periods = window, as pandas rolling/TA-Lib).
SMA_WINDOWS: Mapping[str, int] = {"sma_50": 50, "sma_200": 200}

REQUIRED_INDICATOR_COLUMNS: tuple[str, ...] = ("symbol", "date", "close", "sma_50", "sma_200")

ENVIRONMENT_COLUMNS: tuple[str, ...] = (
    "date",
    "spy_close",
    "spy_sma_50",
    "spy_sma_200",
    "qqq_close",
    "qqq_sma_50",
    "qqq_sma_200",
    "breadth_pct",
    "vix_close",
    "environment",
    "base_size",
    "risk_pct",
    "heat_limit",
    "missing_inputs",
    "warmup_inputs",
)

# What a trader does in each environment (issue 3, section 2).
RECOMMENDATIONS: Mapping[str, str] = {
    "A": "Aggressive: 3-5 new trades a week.",
    "B": "Normal: 2-3 new trades a week.",
    "C": "Defensive: at most 1 new trade a week.",
    "D": "Avoid new trades.",
}


class EnvironmentInputError(ValueError):
    """The indicators frame cannot be classified: missing columns or duplicated (symbol, date) rows."""


class EnvironmentSizing(NamedTuple):
    """Per-environment sizing: fraction of equity per position, risked per trade, and total open risk."""

    base_size: float
    risk_pct: float
    heat_limit: float


@dataclass(frozen=True)
class EnvironmentParams:
    """Every seed number of the environment rule and its sizing table, overridable one by one.

    Flat float fields with defaults so a Dagster ``Config`` can mirror them field for field.
    Breadth bounds are percentages (0-100), VIX bounds index points, sizes fractions of equity.
    """

    a_breadth_min: float = 70.0
    a_vix_max: float = 25.0
    b_breadth_min: float = 50.0
    b_vix_max: float = 30.0
    c_breadth_min: float = 30.0
    c_vix_max: float = 35.0
    a_base_size: float = 0.10
    a_risk_pct: float = 0.005
    a_heat_limit: float = 0.025
    b_base_size: float = 0.08
    b_risk_pct: float = 0.004
    b_heat_limit: float = 0.020
    c_base_size: float = 0.05
    c_risk_pct: float = 0.0025
    c_heat_limit: float = 0.010
    d_base_size: float = 0.03
    d_risk_pct: float = 0.002
    d_heat_limit: float = 0.015

    def __post_init__(self) -> None:
        for env in ("a", "b", "c"):
            breadth = getattr(self, f"{env}_breadth_min")
            vix = getattr(self, f"{env}_vix_max")
            if not (math.isfinite(breadth) and 0.0 <= breadth <= 100.0):
                raise ValueError(
                    f"{env}_breadth_min must be a percentage in [0, 100], got {breadth!r}"
                )
            if not (math.isfinite(vix) and vix >= 0.0):
                raise ValueError(
                    f"{env}_vix_max must be a finite non-negative VIX level, got {vix!r}"
                )
        for env in ENVIRONMENTS:
            for name in EnvironmentSizing._fields:
                value = getattr(self, f"{env.lower()}_{name}")
                if not (math.isfinite(value) and 0.0 < value <= 1.0):
                    raise ValueError(
                        f"{env.lower()}_{name} must be a fraction of equity in (0, 1], got {value!r}"
                    )

    def sizing(self, environment: str) -> EnvironmentSizing:
        """base_size, risk_pct and heat_limit for environment 'A'..'D'."""
        if environment not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {environment!r}; expected one of {ENVIRONMENTS}")
        prefix = environment.lower()
        return EnvironmentSizing(
            *(getattr(self, f"{prefix}_{n}") for n in EnvironmentSizing._fields)
        )


DEFAULT_ENVIRONMENT_PARAMS = EnvironmentParams()


def classify_environments(
    frame: pd.DataFrame, params: EnvironmentParams = DEFAULT_ENVIRONMENT_PARAMS
) -> pd.Series:
    """Apply the A/B/C/D rule row by row to columns spy_close, spy_sma_50, spy_sma_200, qqq_*,
    breadth_pct and vix_close. Returns an object Series of 'A'..'D', or None where a close,
    the breadth or the VIX is NaN. A NaN SMA makes "above it" false (the caller decides whether
    that is warm-up or missing data; compute_market_environment nulls the missing case).
    """
    col = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64") for c in (
        "spy_close", "spy_sma_50", "spy_sma_200", "qqq_close", "qqq_sma_50", "qqq_sma_200",
        "breadth_pct", "vix_close",
    )}  # fmt: skip
    # NaN comparisons are False, so a SMA that does not exist yet never counts as "above".
    above_50 = (col["spy_close"] > col["spy_sma_50"]) & (col["qqq_close"] > col["qqq_sma_50"])
    above_200 = (col["spy_close"] > col["spy_sma_200"]) & (col["qqq_close"] > col["qqq_sma_200"])
    breadth, vix = col["breadth_pct"], col["vix_close"]
    rule_a = above_50 & above_200 & (breadth >= params.a_breadth_min) & (vix <= params.a_vix_max)
    rule_b = above_50 & (breadth >= params.b_breadth_min) & (vix <= params.b_vix_max)
    rule_c = (breadth >= params.c_breadth_min) & (vix <= params.c_vix_max)
    env = np.select([rule_a, rule_b, rule_c], ["A", "B", "C"], default="D").astype(object)
    unknown = (
        np.isnan(col["spy_close"]) | np.isnan(col["qqq_close"]) | np.isnan(breadth) | np.isnan(vix)
    )
    env[unknown] = None
    return pd.Series(env, index=frame.index, name="environment", dtype=object)


def compute_market_environment(
    indicators: pd.DataFrame,
    params: EnvironmentParams = DEFAULT_ENVIRONMENT_PARAMS,
    prior_closes: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per session with the benchmark inputs, breadth, environment and its sizing.

    ``prior_closes`` ({"SPY": n, "QQQ": m}): closes stored before the frame's first session. A
    missing SMA is warm-up only while the closes so far (those plus the frame's) are fewer than its
    window; on a warmed-up session it is a missing input. Without it, a one-session frame would
    read every missing SMA as warm-up.

    Columns: ENVIRONMENT_COLUMNS. ``missing_inputs``/``warmup_inputs`` are '; '-joined names such as
    'SPY close' or 'QQQ sma_200' ('' when none). Empty input -> empty frame with those columns.
    Raises EnvironmentInputError on missing columns or duplicated (symbol, date) rows.
    """
    _validate(indicators)
    if indicators.empty:
        return _empty_environment()
    frame = indicators[list(REQUIRED_INDICATOR_COLUMNS)]
    sessions = pd.Index(sorted(frame.loc[frame["symbol"] != VIX, "date"].unique()), name="date")
    if sessions.empty:
        return _empty_environment()

    out = pd.DataFrame(index=sessions)
    missing: list[pd.Series] = []
    warmup: list[pd.Series] = []
    for sym in (SPY, QQQ):
        prefix = sym.lower()
        rows = frame[frame["symbol"] == sym].sort_values("date").set_index("date")
        prior = (prior_closes or {}).get(sym, 0)
        closes_so_far = prior + rows["close"].notna().cumsum().reindex(sessions).ffill().fillna(0)
        close = rows["close"].reindex(sessions)
        out[f"{prefix}_close"] = close
        missing.append(pd.Series(np.where(close.isna(), f"{sym} close", ""), index=sessions))
        for sma, window in SMA_WINDOWS.items():
            values = rows[sma].reindex(sessions)
            out[f"{prefix}_{sma}"] = values
            gap = values.isna() & close.notna()
            warming = gap & (closes_so_far < window)
            missing.append(pd.Series(np.where(gap & ~warming, f"{sym} {sma}", ""), index=sessions))
            warmup.append(pd.Series(np.where(warming, f"{sym} {sma}", ""), index=sessions))

    stocks = frame[~frame["symbol"].isin(BENCHMARK_SYMBOLS)]
    eligible = stocks[stocks["close"].notna() & stocks["sma_50"].notna()]
    counts = (
        (eligible["close"] > eligible["sma_50"])
        .groupby(eligible["date"])
        .agg(["sum", "count"])
        .reindex(sessions)
    )
    # 100 * above / eligible: exact for the integer counts at the 70/50/30 boundaries.
    out["breadth_pct"] = (100.0 * counts["sum"] / counts["count"]).astype("float64")
    missing.append(pd.Series(np.where(out["breadth_pct"].isna(), "breadth", ""), index=sessions))

    vix = frame[frame["symbol"] == VIX].set_index("date")["close"].reindex(sessions)
    out["vix_close"] = vix
    missing.append(pd.Series(np.where(vix.isna(), f"{VIX} close", ""), index=sessions))

    out["missing_inputs"] = _join_labels(missing)
    out["warmup_inputs"] = _join_labels(warmup)
    env = classify_environments(out, params)
    env[out["missing_inputs"] != ""] = None
    out["environment"] = env
    for name in EnvironmentSizing._fields:
        lookup = {e: getattr(params.sizing(e), name) for e in ENVIRONMENTS}
        out[name] = env.map(lookup).astype("float64")
    out = out.reset_index()
    return out[list(ENVIRONMENT_COLUMNS)]


def missing_benchmark_sessions(env_df: pd.DataFrame) -> pd.DataFrame:
    """Sessions whose SPY, QQQ or ^VIX input is missing (environment left null): date, missing_inputs.

    The blocking asset check fails when this is non-empty. A session whose only gap is breadth
    (no stock with a SMA 50 yet) is not listed here: it is unclassified too, but that is the
    universe's warm-up, not a missing benchmark.
    """
    require_columns(env_df, ("date", "missing_inputs"), "market-environment", EnvironmentInputError)
    labels = env_df["missing_inputs"].fillna("").astype(str)
    pattern = "|".join(f"(?:^|; ){re.escape(sym)} " for sym in (SPY, QQQ, VIX))
    hit = labels.str.contains(pattern, regex=True)
    return env_df.loc[hit, ["date", "missing_inputs"]].reset_index(drop=True)


def environment_report_markdown(env_row: Mapping[str, Any] | pd.Series) -> str:
    """Markdown report of one session (normally the latest): prices vs SMAs, breadth, VIX,
    environment, and what to do about it."""
    row = dict(env_row)
    env = row.get("environment")
    env = env if isinstance(env, str) and env in ENVIRONMENTS else None
    date = row.get("date")
    title = f"## Market environment {date}: " + (f"**{env}**" if env else "**unclassified**")
    lines = [title, "", "| | close | SMA 50 | SMA 200 |", "|---|---:|---:|---:|"]
    for sym in (SPY, QQQ):
        p = sym.lower()
        close = row.get(f"{p}_close")
        lines.append(
            f"| {sym} | {_fmt(close)} | {_vs(close, row.get(f'{p}_sma_50'))} | "
            f"{_vs(close, row.get(f'{p}_sma_200'))} |"
        )
    lines += [
        "",
        f"- Breadth: {_fmt(row.get('breadth_pct'), 1, '%')} of stocks above their 50-day SMA",
        f"- VIX: {_fmt(row.get('vix_close'))}",
    ]
    warm = row.get("warmup_inputs")
    if isinstance(warm, str) and warm:
        lines.append(f"- Still warming up (counted as not above): {warm}")
    lines.append("")
    if env is None:
        gaps = row.get("missing_inputs") or "unknown"
        lines.append(
            f"**No recommendation**: missing inputs ({gaps}). Do not trade on this session's environment."
        )
    else:
        lines.append(
            f"**Recommendation ({env})**: {RECOMMENDATIONS[env]} "
            f"Base size {_pct(row.get('base_size'))} of equity, risk {_pct(row.get('risk_pct'))} "
            f"per trade, heat limit {_pct(row.get('heat_limit'))}."
        )
    return "\n".join(lines) + "\n"


def _validate(indicators: pd.DataFrame) -> None:
    require_columns(indicators, REQUIRED_INDICATOR_COLUMNS, "indicators", EnvironmentInputError)
    reject_duplicate_keys(indicators, ("symbol", "date"), "indicators", EnvironmentInputError)


def _empty_environment() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="float64") for c in ENVIRONMENT_COLUMNS})
    for c in ("date", "environment", "missing_inputs", "warmup_inputs"):
        out[c] = pd.Series(dtype=object)
    return out


def _join_labels(parts: list[pd.Series]) -> pd.Series:
    stacked = pd.concat(parts, axis=1)
    return stacked.apply(lambda r: "; ".join(x for x in r if x), axis=1).astype(object)


def _is_number(value: Any) -> bool:
    try:
        return value is not None and not pd.isna(value) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any, digits: int = 2, suffix: str = "") -> str:
    return f"{float(value):,.{digits}f}{suffix}" if _is_number(value) else "n/a"


def _pct(value: Any) -> str:
    return f"{100 * float(value):g}%" if _is_number(value) else "n/a"


def _vs(close: Any, sma: Any) -> str:
    if not _is_number(sma):
        return "n/a"
    if not _is_number(close):
        return _fmt(sma)
    gap = float(close) / float(sma) - 1.0
    side = "above" if float(close) > float(sma) else "not above"
    return f"{_fmt(sma)} ({side}, {gap:+.1%})"
