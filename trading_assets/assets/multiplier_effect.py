"""multiplier_effect: the stdev strategy traded with the recorded threshold multipliers and with
every session at 1.0, side by side, so the effect of market_analysis (or of a multipliers file)
can be measured.

A table of its own rather than a ``stdev_neutral`` strategy partition: a partition would change
STRATEGIES (the engine's dispatch, the optimizer's search spaces, the API's strategy list, the
CLI's --strategy and every test that counts strategies) for a variant that differs by one input.
Here the two runs share one config and one set of bars, and nothing else moves.
"""

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
from trading_assets.core.backtest.multipliers import MULTIPLIER_COLUMNS, NEUTRAL
from trading_assets.core.backtest.result import TRADE_COLUMNS
from trading_assets.core.metrics import (
    SUMMARY_KEYS,
    TRADE_STATISTICS_KEYS,
    performance_summary,
    returns_from_equity,
    trade_statistics,
)

STDEV = "stdev"
# The two rows: stdev as backtests trades it, and stdev with every multiplier at 1.0.
RECORDED, NEUTRAL_RUN = "stdev", "stdev_neutral"
SHOWN = ["strategy", "total_return", "cagr", "sharpe", "max_drawdown", "trade_count"]


@dg.asset(
    group_name=PORTFOLIO_GROUP,
    kinds={"pandas", "duckdb"},
    metadata={"unique_key": ["strategy"]},
    ins=STRATEGY_INS,
    # After the backtests, in portfolio_job (PORTFOLIO_SELECTION is what follows them).
    deps=["backtest_equity"],
)
def multiplier_effect(
    config: BacktestConfig,
    symbols: pd.DataFrame,
    raw_prices: pd.DataFrame,
    indicators: pd.DataFrame,
    market_environment: pd.DataFrame,
    watchlist: pd.DataFrame,
    threshold_multipliers: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Two rows: `stdev` traded with each session's recorded threshold multipliers (the LLM's,
    a file's, the run config's) and `stdev_neutral` with 1.0 on every session, same bars, params
    and costs (this asset's config, as backtests'), with the performance_metrics figures (total
    return, CAGR, Sharpe, max drawdown, ..., trade count, expectancy in R) and how many sessions
    had a multiplier other than 1.0. Equal rows mean the multipliers changed no trade."""
    bars = strategy_bars(symbols, raw_prices, indicators, config.start, config.end)
    engine = engine_inputs(config, market_environment, watchlist, threshold_multipliers)
    recorded = engine.pop("threshold_multipliers")
    not_neutral = (
        int((recorded[list(MULTIPLIER_COLUMNS)] != NEUTRAL).any(axis=1).sum())
        if recorded is not None
        else 0
    )
    rows = []
    for name, multipliers in ((RECORDED, recorded), (NEUTRAL_RUN, None)):
        result = run_backtest(
            bars, STDEV, config.params.get(STDEV), threshold_multipliers=multipliers, **engine
        )
        summary = performance_summary(returns_from_equity(result.equity))
        stats = trade_statistics(result.trades[list(TRADE_COLUMNS)], result.equity)
        rows.append({
            "strategy": name,
            "sessions_not_neutral": not_neutral if multipliers is not None else 0,
            "sessions": len(result.equity),
            "end_equity": float(result.equity.iloc[-1]) if len(result.equity) else float("nan"),
            **{k: summary[k] for k in SUMMARY_KEYS},
            **{k: stats[k] for k in TRADE_STATISTICS_KEYS},
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    return dg.Output(
        frame,
        metadata={
            "sessions_not_neutral": not_neutral,
            "sharpe_difference": float(frame["sharpe"].iloc[0] - frame["sharpe"].iloc[1]),
            "summary": dg.MetadataValue.md(frame[SHOWN].to_markdown(index=False, floatfmt=".4f")),
        },
    )
