"""The prompt of one session: the market environment and, for the benchmarks and the session's
watchlist, the features the STDEV tactic trades on (z-score, ATR percentile, EMA slope, RS).

The features go in as one JSON block with numbers rounded to FEATURE_DIGITS significant digits and
symbols in a fixed order, so the same stored rows give the same text and the same ``prompt_hash``
(the cache key, with the session). The hash covers the model and both messages: another model or
another wording asks again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import numbers
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from trading_assets.core.symbols import BENCHMARK_SYMBOLS
from trading_assets.llm.answer import ANSWER_SCHEMA

FEATURE_COLUMNS: tuple[str, ...] = (
    "close",
    "zscore_20",
    "atr_pct_rank_252",
    "ema_slope_20",
    "rs_rating",
)
ENVIRONMENT_FIELDS: tuple[str, ...] = (
    "environment",
    "spy_close",
    "spy_sma_50",
    "spy_sma_200",
    "qqq_close",
    "qqq_sma_50",
    "qqq_sma_200",
    "breadth_pct",
    "vix_close",
)
FEATURE_DIGITS = 4
# The strongest watchlist names by RS rating a prompt lists (a long watchlist only costs tokens).
MAX_WATCHLIST_SYMBOLS = 25

SYSTEM_PROMPT = f"""You are the market analyst of a swing-trading system. Its STDEV tactic trades \
z-score extremes of the 20-day close: mean reversion arms at |z| >= mr_arm_z and triggers when |z| \
comes back to <= mr_trigger_z; trend continuation arms at |z| >= tc_arm_z with the 20-day EMA \
slope of the same sign and triggers on the pull-back to |z| <= tc_trigger_z. For today's session \
you choose four multipliers of those thresholds (mr_arm, mr_trigger, tc_arm, tc_trigger): 1.0 \
keeps a threshold, above 1.0 asks for a bigger move (fewer trades), below 1.0 a smaller one; \
each must be between 0.5 and 2.0. Judge from the market environment (A aggressive .. D avoid), \
breadth, the VIX, and the z-scores, ATR percentiles (0-1, volatility vs the last year), EMA \
slopes and RS ratings (1-99) of the benchmarks and the watchlist. Answer with ONE JSON object \
and nothing else, matching this JSON Schema: {json.dumps(ANSWER_SCHEMA, sort_keys=True)}"""


@dataclass(frozen=True)
class Prompt:
    session: dt.date
    system: str
    user: str
    prompt_hash: str


def build_prompt(
    session: dt.date,
    environment: pd.DataFrame,
    features: pd.DataFrame,
    watchlist: pd.DataFrame,
    model: str,
) -> Prompt:
    """The prompt of ``session``: its ``environment`` row (none: "unknown"), the FEATURE_COLUMNS
    of BENCHMARK_SYMBOLS and of the session's watchlist symbols (at most MAX_WATCHLIST_SYMBOLS, by
    RS rating) from ``features`` (symbol, date, FEATURE_COLUMNS). A missing value is null; an
    empty watchlist is an empty list."""
    return build_prompts([session], environment, features, watchlist, model)[0]


def build_prompts(
    sessions: Sequence[dt.date],
    environment: pd.DataFrame,
    features: pd.DataFrame,
    watchlist: pd.DataFrame,
    model: str,
) -> list[Prompt]:
    """build_prompt of each session; the frames are turned into plain rows by date once (a
    backfill has thousands of sessions, and pandas per session costs milliseconds each)."""
    env = {row["date"]: row for row in _records(environment)}
    rows_by_day: dict[dt.date, list[dict]] = defaultdict(list)
    for row in _records(features, ["symbol", "date", *FEATURE_COLUMNS]):
        rows_by_day[row["date"]].append(row)
    listed_by_day: dict[dt.date, set[str]] = defaultdict(set)
    for row in _records(watchlist, ["symbol", "date"]):
        listed_by_day[row["date"]].add(str(row["symbol"]))
    return [
        _prompt(session, env.get(session), rows_by_day[session], listed_by_day[session], model)
        for session in sessions
    ]


def _prompt(
    session: dt.date, env: dict | None, rows: list[dict], listed: set[str], model: str
) -> Prompt:
    benchmarks = sorted((r for r in rows if r["symbol"] in BENCHMARK_SYMBOLS), key=_symbol)
    watch = [r for r in rows if r["symbol"] in listed and r["symbol"] not in BENCHMARK_SYMBOLS]
    # strongest RS first (unknown RS last), then by symbol
    watch.sort(
        key=lambda r: (
            json_value(r.get("rs_rating")) is None,
            -(json_value(r.get("rs_rating")) or 0),
            _symbol(r),
        )
    )
    data = {
        "session": session.isoformat(),
        "market_environment": (
            {name: json_value(env.get(name)) for name in ENVIRONMENT_FIELDS} if env else "unknown"
        ),
        "benchmarks": [_features(r) for r in benchmarks],
        "watchlist_size": len(listed),
        "watchlist": [_features(r) for r in watch[:MAX_WATCHLIST_SYMBOLS]],
    }
    user = (
        f"Session {session.isoformat()}. Features (null = not known yet):\n"
        f"{json.dumps(data, sort_keys=True)}\n"
        "Give your analysis and the four multipliers as the JSON object described."
    )
    digest = hashlib.sha256("\0".join((model, SYSTEM_PROMPT, user)).encode()).hexdigest()
    return Prompt(session, SYSTEM_PROMPT, user, digest[:16])


def _records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict]:
    """Rows as dicts with ``date`` as datetime.date; none when the frame lacks a needed column."""
    needed = columns or ["date"]
    if frame.empty or any(c not in frame.columns for c in needed):
        return []
    kept = frame[columns] if columns else frame
    kept = kept.assign(date=pd.to_datetime(kept["date"]).dt.date)
    return kept.to_dict("records")


def _symbol(row: dict) -> str:
    return str(row["symbol"])


def _features(row: dict) -> dict[str, object]:
    return {"symbol": _symbol(row), **{c: json_value(row.get(c)) for c in FEATURE_COLUMNS}}


def json_value(value: object) -> object:
    """JSON-ready: None for NaN/None, numbers to FEATURE_DIGITS significant digits, else text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):  # numpy scalars too
        number = float(value)
        return None if math.isnan(number) else float(f"{number:.{FEATURE_DIGITS}g}")
    return str(value)
