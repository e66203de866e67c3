"""market_analysis: per session, an LLM's reading of the market and its four STDEV threshold
multipliers, stored with its status, reason, model, prompt hash, tokens and cost.

Thin: the prompt, the answer's schema, the clients, retries and the cache live in trading_assets.llm.
"""

import dagster as dg
import pandas as pd

from trading_assets.assets.common import DAILY, day_after, window_sessions
from trading_assets.core.backtest.multipliers import MULTIPLIER_COLUMNS
from trading_assets.core.symbols import BENCHMARK_SYMBOLS
from trading_assets.llm.analyse import FALLBACK, RunStats, analyse_sessions, off_rows
from trading_assets.llm.prompt import FEATURE_COLUMNS, build_prompts
from trading_assets.llm.resource import LLMResource
from trading_assets.storage.contract import TableStore

MARKET_ANALYSIS = "market_analysis"
# Non-blocking: a fallback session trades on 1.0, which is safe; a person should still look.
LLM_ANSWERS_VALID = "llm_answers_valid"
FEATURE_INPUTS = ["symbol", "date", *FEATURE_COLUMNS]
# How many sessions the metadata preview shows.
PREVIEW_SESSIONS = 10


@dg.asset(
    **{**DAILY, "group_name": "portfolio"},
    metadata={"partition_expr": "date", "unique_key": ["date"]},
    # Read through io_manager.read_rows, not loaded as inputs: with the `none` resource nothing
    # is read, and otherwise only the benchmarks' and the watchlist's indicator rows are.
    deps=["market_environment", "indicators", "watchlist"],
    check_specs=[
        dg.AssetCheckSpec(
            LLM_ANSWERS_VALID,
            asset=MARKET_ANALYSIS,
            blocking=False,
            description="Every session got a valid answer from the LLM (no fallback to 1.0 for "
            "a timeout, throttling, an error status, malformed JSON or a value out of range).",
        )
    ],
)
def market_analysis(
    context: dg.AssetExecutionContext,
    llm: LLMResource,
    io_manager: dg.ResourceParam[TableStore],
):
    """An LLM's short analysis of each session (market environment, breadth, the VIX, and the
    z-score, ATR percentile, EMA slope and RS of the benchmarks and the watchlist) with the four
    STDEV threshold multipliers it suggests, its confidence and reasoning. status ``ok`` rows feed
    threshold_multipliers; ``fallback`` rows (no usable answer: the reason is stored) and ``off``
    rows (no LLM configured, the default) are 1.0. A session already stored with an ok answer to
    the same prompt is not asked again."""
    sessions = window_sessions(context)
    if not llm.enabled:
        frame, stats, model = off_rows(sessions), RunStats(), ""
    else:
        model = llm.model_name()
        start, end = sessions[0], day_after(sessions[-1])
        environment = io_manager.read_rows("market_environment", start=start, end=end)
        watchlist = _with_dates(io_manager.read_rows("watchlist", start=start, end=end))
        listed = set(watchlist["symbol"]) if "symbol" in watchlist else set()
        features = io_manager.read_rows(
            "indicators",
            columns=FEATURE_INPUTS,
            symbols=sorted(listed | set(BENCHMARK_SYMBOLS)),
            start=start,
            end=end,
        )
        prompts = build_prompts(
            sessions,
            _with_dates(environment),
            _with_dates(features),
            watchlist if "symbol" in watchlist else pd.DataFrame(columns=["symbol", "date"]),
            model,
        )
        stored = io_manager.read_rows(MARKET_ANALYSIS, start=start, end=end)
        frame, stats = analyse_sessions(
            prompts,
            llm.client(),
            model,
            stored,
            policy=llm.retry_policy(),
            pricing=llm.pricing(),
            warn=context.log.warning,
        )
    fallbacks = frame[frame["status"] == FALLBACK]
    yield dg.Output(frame, metadata=_metadata(frame, stats, llm.kind, model))
    yield dg.AssetCheckResult(
        check_name=LLM_ANSWERS_VALID,
        passed=fallbacks.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "fallback_sessions": len(fallbacks),
            "listed": dg.MetadataValue.md(
                fallbacks[["date", "fallback_reason"]].head(50).to_markdown(index=False)
            ),
        },
    )


def _with_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """``date`` as datetime.date (a table never written reads back with no columns at all)."""
    if "date" not in frame.columns:
        return pd.DataFrame(columns=["date", *frame.columns])
    return frame.assign(date=pd.to_datetime(frame["date"]).dt.date)


def _metadata(frame: pd.DataFrame, stats: RunStats, kind: str, model: str) -> dict[str, object]:
    shown = frame[["date", "status", *MULTIPLIER_COLUMNS, "confidence", "fallback_reason"]]
    return {
        "sessions": len(frame),
        "llm": kind,
        "model": model,
        "statuses": dg.MetadataValue.json(
            {str(k): int(v) for k, v in frame["status"].value_counts().items()}
        ),
        **stats.usage(),
        "preview": dg.MetadataValue.md(
            shown.tail(PREVIEW_SESSIONS).to_markdown(index=False, floatfmt=".3g")
        ),
    }
