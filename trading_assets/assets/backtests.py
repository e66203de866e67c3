"""threshold_multipliers (per session) and backtests (one partition per strategy).

Thin: the rules live in trading_assets.core.backtest (engine, strategies, multipliers).
"""

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from trading_assets import settings
from trading_assets.assets.common import DAILY, day_after, window_sessions
from trading_assets.core.backtest import run_backtest
from trading_assets.core.backtest.multipliers import (
    MULTIPLIER_COLUMNS,
    NEUTRAL,
    default_multipliers,
    read_multipliers_csv,
    validate_multipliers,
)
from trading_assets.core.backtest.result import (
    DEFAULT_COMMISSION_BPS,
    DEFAULT_EQUITY,
    DEFAULT_SLIPPAGE_BPS,
    STRATEGIES,
    TRADE_COLUMNS,
)
from trading_assets.core.metrics import performance_summary, returns_from_equity
from trading_assets.core.prices import PRICE_COLUMNS
from trading_assets.core.quarantine import QUARANTINE_COLUMN
from trading_assets.core.screen import ENVIRONMENT_INPUT_COLUMNS, WATCHLIST_COLUMNS
from trading_assets.llm.analyse import llm_multipliers
from trading_assets.storage.contract import TableStore

PORTFOLIO_GROUP = "portfolio"
strategy_partitions = dg.StaticPartitionsDefinition(list(STRATEGIES))
EVERY_SESSION = dg.AllPartitionMapping()

# Who set a session's multipliers (the `source` column); market_analysis' answers are llm:<model>.
CONFIG_SOURCE, FILE_SOURCE = "config", "file"

# The backtests multi-asset's outputs: the first assets partitioned by strategy.
STRATEGY_ASSETS = ("backtest_trades", "backtest_equity")
# The stored layout of the two backtest tables.
TRADE_ID = "trade_id"
EQUITY_COLUMNS = ("strategy", "date", "equity")


class ThresholdMultipliersConfig(dg.Config):
    mr_arm: float = 1.0
    """Multiplies the STDEV tactic's mean-reversion arming |z| (0.5-2.0)."""
    mr_trigger: float = 1.0
    tc_arm: float = 1.0
    tc_trigger: float = 1.0
    reasoning: str = ""
    """Why these values (recorded with every session they set)."""


@dg.asset(
    **{**DAILY, "group_name": PORTFOLIO_GROUP},
    metadata={"partition_expr": "date", "unique_key": ["date"]},
    # Read with read_rows, not as an input: market_analysis may never have been materialised.
    deps=["market_analysis"],
)
def threshold_multipliers(
    context: dg.AssetExecutionContext,
    config: ThresholdMultipliersConfig,
    io_manager: dg.ResourceParam[TableStore],
) -> dg.Output[pd.DataFrame]:
    """The four STDEV threshold multipliers of each session (mr_arm, mr_trigger, tc_arm,
    tc_trigger; 1.0 leaves the tactic's thresholds as they are, 0.5-2.0 allowed). Highest first:
    a session listed in the CSV at TRADING_ASSETS_MULTIPLIERS_PATH takes the file's values; else
    this run's config when it is not 1.0 (every session of the run); else market_analysis' ok
    answer for the session; else 1.0. `source` records which: `file:<name>`, `config`,
    `llm:<model>` or `default`. Anything out of range is refused with the offending session named."""
    sessions = window_sessions(context)
    frame = default_multipliers(sessions)
    answered = llm_multipliers(
        io_manager.read_rows("market_analysis", start=sessions[0], end=day_after(sessions[-1]))
    )
    answered = answered[answered["date"].isin(set(sessions))]
    if len(answered):
        frame = pd.concat([frame[~frame["date"].isin(set(answered["date"]))], answered])
    values = {name: float(getattr(config, name)) for name in MULTIPLIER_COLUMNS}
    if any(v != NEUTRAL for v in values.values()):
        frame = frame.assign(
            **values, source=CONFIG_SOURCE, reasoning=config.reasoning or "set in the run config"
        )
    path = settings.env(settings.MULTIPLIERS_PATH)
    listed = read_multipliers_csv(path) if path else frame.iloc[:0]
    listed = listed[listed["date"].isin(set(sessions))]
    if len(listed):
        listed = listed.assign(source=f"{FILE_SOURCE}:{_name(path)}")
        frame = pd.concat([frame[~frame["date"].isin(set(listed["date"]))], listed])
    frame = validate_multipliers(frame.sort_values("date").reset_index(drop=True))
    return dg.Output(
        frame,
        metadata={
            "sessions": len(frame),
            "sessions_from_file": len(listed),
            "sessions_from_llm": int(frame["source"].str.startswith("llm:").sum()),
            "multipliers_path": path or "",
            "sources": dg.MetadataValue.json(
                {str(k): int(v) for k, v in frame["source"].value_counts().items()}
            ),
            "sessions_not_neutral": int(
                (frame[list(MULTIPLIER_COLUMNS)] != NEUTRAL).any(axis=1).sum()
            ),
        },
    )


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


# What a strategy is run on, every stored session of it: backtests and strategy_optimization.
STRATEGY_INS = {
    "symbols": dg.AssetIn(metadata={"columns": ["symbol", "is_benchmark"]}),
    "raw_prices": dg.AssetIn(
        partition_mapping=EVERY_SESSION,
        metadata={"columns": [*PRICE_COLUMNS, QUARANTINE_COLUMN]},
    ),
    "indicators": dg.AssetIn(partition_mapping=EVERY_SESSION),
    "market_environment": dg.AssetIn(
        partition_mapping=EVERY_SESSION,
        metadata={"columns": list(ENVIRONMENT_INPUT_COLUMNS)},
    ),
    "watchlist": dg.AssetIn(partition_mapping=EVERY_SESSION),
    "threshold_multipliers": dg.AssetIn(
        partition_mapping=EVERY_SESSION, metadata={"allow_missing": True}
    ),
}


class BacktestConfig(dg.Config):
    params: dict[str, dict[str, Any]] = {}
    """Per strategy, named constants to override, e.g. {"stdev": {"mr_arm_z": 1.5}} or
    {"ma_crossover": {"fast_average": "ema_12"}} (trading_assets/core/backtest/params.py)."""
    equity: float = DEFAULT_EQUITY
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    start: str | None = None
    """First session traded (YYYY-MM-DD); default: the first stored session."""
    end: str | None = None
    """Last session traded; default: the last stored session."""


@dg.multi_asset(
    outs={
        "backtest_trades": dg.AssetOut(
            group_name=PORTFOLIO_GROUP,
            kinds={"pandas", "duckdb"},
            description="One row per round trip (a partial exit is its own row; an open trade has "
            "no exit), per strategy: side, STDEV setup, entry and exit, shares, fees, pnl, R, reason.",
            metadata={
                "partition_expr": "strategy",
                "unique_key": ["strategy", TRADE_ID],
                "allow_empty": True,
            },
        ),
        "backtest_equity": dg.AssetOut(
            group_name=PORTFOLIO_GROUP,
            kinds={"pandas", "duckdb"},
            description="Daily portfolio equity per strategy, marked at each session's close.",
            metadata={"partition_expr": "strategy", "unique_key": ["strategy", "date"]},
        ),
    },
    partitions_def=strategy_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins=STRATEGY_INS,
)
def backtests(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    symbols: pd.DataFrame,
    raw_prices: pd.DataFrame,
    indicators: pd.DataFrame,
    market_environment: pd.DataFrame,
    watchlist: pd.DataFrame,
    threshold_multipliers: pd.DataFrame,
):
    """Each strategy traded over the stored history with no look-ahead (signals at a close fill
    at the next open, slippage and commission against you): ma_crossover, rsi_mean_reversion and
    the STDEV MR/TC tactic as one sleeve per stock, watchlist_momentum as one account trading the
    watchlist's sized plans. The trades and the daily equity of each strategy are stored under
    its partition; a quarantined bar is a session the strategy cannot trade."""
    bars = strategy_bars(symbols, raw_prices, indicators, config.start, config.end)
    engine = engine_inputs(config, market_environment, watchlist, threshold_multipliers)
    trades_out, equity_out, summary = [], [], []
    for strategy in context.partition_keys:
        result = run_backtest(bars, strategy, config.params.get(strategy), **engine)
        trades = result.trades.assign(strategy=strategy)
        trades.insert(1, TRADE_ID, range(len(trades)))
        trades_out.append(trades[["strategy", TRADE_ID, *TRADE_COLUMNS[1:]]])
        equity_out.append(
            pd.DataFrame(
                {"strategy": strategy, "date": list(result.equity.index), "equity": result.equity}
            ).reset_index(drop=True)
        )
        summary.append(_summary_row(strategy, result.trades, result.equity))
    trades_frame = pd.concat(trades_out, ignore_index=True)
    equity_frame = pd.concat(equity_out, ignore_index=True)
    table = pd.DataFrame(summary)
    common = {
        "strategies": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=",.4g")),
        "symbols_traded": int(bars["symbol"].nunique()),
        "first_session": str(min(bars["date"])) if len(bars) else "",
        "last_session": str(max(bars["date"])) if len(bars) else "",
    }
    yield dg.Output(
        trades_frame,
        output_name="backtest_trades",
        metadata={**common, "trades": len(trades_frame)},
    )
    yield dg.Output(equity_frame, output_name="backtest_equity", metadata=common)


def engine_inputs(
    config: BacktestConfig,
    market_environment: pd.DataFrame,
    watchlist: pd.DataFrame,
    threshold_multipliers: pd.DataFrame,
) -> dict[str, Any]:
    """run_backtest's keyword inputs from a run's costs and the stored side tables; shared by
    backtests, strategy_optimization, multiplier_effect and stdev_trade_reviews."""
    return {
        "equity": config.equity,
        "commission_bps": config.commission_bps,
        "slippage_bps": config.slippage_bps,
        "market_environment": market_environment,
        "watchlist": stored_watchlist(watchlist),
        "threshold_multipliers": threshold_multipliers if len(threshold_multipliers) else None,
    }


def stored_watchlist(watchlist: pd.DataFrame) -> pd.DataFrame:
    """The watchlist input with its columns even when empty: a table first written empty has no
    rows to type its text columns by (storage contract), so it can come back without them."""
    return pd.DataFrame(columns=list(WATCHLIST_COLUMNS)) if watchlist.empty else watchlist


def strategy_bars(
    symbols: pd.DataFrame,
    raw_prices: pd.DataFrame,
    indicators: pd.DataFrame,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """Stocks' clean bars joined with their indicators, within start..end (YYYY-MM-DD, inclusive;
    None: no bound). Shared by backtests and strategy_optimization."""
    stocks = set(symbols.loc[~symbols["is_benchmark"].astype(bool), "symbol"])
    prices = raw_prices[
        raw_prices["symbol"].isin(stocks) & raw_prices[QUARANTINE_COLUMN].isna()
    ].drop(columns=[QUARANTINE_COLUMN])
    bars = prices.merge(indicators.drop(columns=["close"], errors="ignore"), on=["symbol", "date"])
    if start:
        bars = bars[bars["date"] >= dt.date.fromisoformat(start)]
    if end:
        bars = bars[bars["date"] <= dt.date.fromisoformat(end)]
    return bars.reset_index(drop=True)


def _summary_row(strategy: str, trades: pd.DataFrame, equity: pd.Series) -> dict[str, object]:
    summary = performance_summary(returns_from_equity(equity)) if len(equity) > 1 else {}
    return {
        "strategy": strategy,
        "trades": len(trades),
        "open": int(trades["exit_date"].isna().sum()),
        "final_equity": float(equity.iloc[-1]) if len(equity) else float("nan"),
        "total_return": summary.get("total_return", float("nan")),
        "sharpe": summary.get("sharpe", float("nan")),
        "max_drawdown": summary.get("max_drawdown", float("nan")),
    }
