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
    env_rows = environment[environment["date"] == session]
    env = (
        {name: _value(env_rows.iloc[-1].get(name)) for name in ENVIRONMENT_FIELDS}
        if len(env_rows)
        else "unknown"
    )
    day = features[features["date"] == session]
    listed = watchlist.loc[watchlist["date"] == session, "symbol"].astype(str)
    watch = day[day["symbol"].isin(set(listed)) & ~day["symbol"].isin(BENCHMARK_SYMBOLS)]
    watch = watch.sort_values(["rs_rating", "symbol"], ascending=[False, True], na_position="last")
    data = {
        "session": session.isoformat(),
        "market_environment": env,
        "benchmarks": _rows(day[day["symbol"].isin(BENCHMARK_SYMBOLS)].sort_values("symbol")),
        "watchlist_size": int(listed.nunique()),
        "watchlist": _rows(watch.head(MAX_WATCHLIST_SYMBOLS)),
    }
    user = (
        f"Session {session.isoformat()}. Features (null = not known yet):\n"
        f"{json.dumps(data, sort_keys=True)}\n"
        "Give your analysis and the four multipliers as the JSON object described."
    )
    digest = hashlib.sha256("\0".join((model, SYSTEM_PROMPT, user)).encode()).hexdigest()
    return Prompt(session, SYSTEM_PROMPT, user, digest[:16])


def _rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [
        {"symbol": str(row["symbol"]), **{c: _value(row.get(c)) for c in FEATURE_COLUMNS}}
        for _, row in frame.iterrows()
    ]


def _value(value: object) -> object:
    """JSON-ready: None for NaN/None, numbers to FEATURE_DIGITS significant digits, else text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):  # numpy scalars too
        number = float(value)
        return None if math.isnan(number) else float(f"{number:.{FEATURE_DIGITS}g}")
    return str(value)
