"""stdev_trade_reviews: the stdev strategy traded with the LLM as trade judge (off by default).

Thin: the rounds of judging live in core.backtest.veto, the judge in trading_assets.llm.veto.
A table of its own beside backtests (as multiplier_effect), so the backtests and every table after
them keep their columns and need no LLM resource.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from trading_assets.assets.backtests import (
    PORTFOLIO_GROUP,
    STRATEGY_INS,
    BacktestConfig,
    engine_inputs,
    strategy_bars,
)
from trading_assets.core.backtest import run_backtest
from trading_assets.core.metrics import performance_summary, returns_from_equity
from trading_assets.llm.analyse import FALLBACK
from trading_assets.llm.resource import LLMResource
from trading_assets.llm.veto import REVIEW_COLUMNS, VETOED, LLMTradeJudge
from trading_assets.storage.contract import TableStore

TRADE_REVIEWS = "stdev_trade_reviews"
# The trade's columns a review row carries when the signal was traded in the final run.
TRADE_KEYS = ["symbol", "entry_date", "side", "setup"]
TRADE_RESULT = [
    "entry_price",
    "exit_date",
    "exit_price",
    "shares",
    "pnl",
    "r_multiple",
    "exit_reason",
]
REVIEWS_STORED = [*REVIEW_COLUMNS, "traded", *TRADE_RESULT]


class TradeReviewConfig(BacktestConfig):
    enabled: bool = False
    """Ask the LLM about each stdev signal before it becomes a trade (off: nothing is asked and
    nothing written: the stored reviews, which are also the cache of the LLM's verdicts, stay)."""


@dg.asset(
    group_name=PORTFOLIO_GROUP,
    kinds={"pandas", "duckdb"},
    metadata={"unique_key": ["symbol", "signal_date"], "allow_empty": True},
    ins=STRATEGY_INS,
    deps=["backtest_equity"],
    output_required=False,
)
def stdev_trade_reviews(
    context: dg.AssetExecutionContext,
    config: TradeReviewConfig,
    llm: LLMResource,
    io_manager: dg.ResourceParam[TableStore],
    symbols: pd.DataFrame,
    raw_prices: pd.DataFrame,
    indicators: pd.DataFrame,
    market_environment: pd.DataFrame,
    watchlist: pd.DataFrame,
    threshold_multipliers: pd.DataFrame,
) -> Iterator[dg.Output[pd.DataFrame]]:
    """Each stdev signal the LLM judged before it became a trade (enabled in the config, with an
    LLM configured): the signal's features, the verdict (approved / vetoed) and its reasoning,
    status ok or fallback (a failed judgement approves, with its reason), tokens and cost, and,
    where the signal was traded, the trade (entry, exit, shares, pnl, R). A vetoed signal is
    suppressed as the ATR cap suppresses one; the stdev run with the vetoes is in the metadata
    beside the same run without them. Off (the default), or without an LLM, the step writes
    nothing: a portfolio run with the default config keeps the reviews an earlier run stored."""
    if not (config.enabled and llm.enabled):
        context.log.info(
            "stdev_trade_reviews: "
            + ("off in the config" if not config.enabled else "no LLM configured")
            + "; nothing asked, the stored reviews are kept"
        )
        return
    bars = strategy_bars(symbols, raw_prices, indicators, config.start, config.end)
    model = llm.model_name()
    judge = LLMTradeJudge(
        llm.client(),
        model,
        market_environment,
        io_manager.read_rows(TRADE_REVIEWS),
        policy=llm.retry_policy(),
        pricing=llm.pricing(),
        warn=context.log.warning,
    )
    engine = engine_inputs(config, market_environment, watchlist, threshold_multipliers)
    params = config.params.get("stdev")
    judged = run_backtest(bars, "stdev", params, trade_veto=judge, **engine)
    plain = run_backtest(bars, "stdev", params, **engine)
    trades = judged.trades[[*TRADE_KEYS, *TRADE_RESULT]]
    reviews = judge.reviews().merge(trades, on=TRADE_KEYS, how="left")
    reviews["traded"] = reviews["shares"].notna()
    reviews = reviews[REVIEWS_STORED]
    stats = judge.stats
    yield dg.Output(
        reviews,
        metadata={
            "enabled": True,
            "model": model,
            "signals": len(reviews),
            "vetoed": int((reviews["verdict"] == VETOED).sum()),
            "fallbacks": int((reviews["status"] == FALLBACK).sum()),
            **stats.usage(),
            "trades_with_veto": len(judged.trades),
            "trades_without_veto": len(plain.trades),
            "total_return_with_veto": _total_return(judged.equity),
            "total_return_without_veto": _total_return(plain.equity),
        },
    )


def _total_return(equity: pd.Series) -> float:
    return float(performance_summary(returns_from_equity(equity))["total_return"])
