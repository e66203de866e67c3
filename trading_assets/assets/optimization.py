"""strategy_optimization and optimization_trials: the walk-forward search of each strategy's
parameters (one partition per strategy).

Thin: the search lives in trading_assets.core.optimize; the inputs are the backtests' own
(STRATEGY_INS, strategy_bars).
"""

import math

import dagster as dg
import pandas as pd

from trading_assets.assets.backtests import (
    PORTFOLIO_GROUP,
    STRATEGY_INS,
    engine_inputs,
    strategy_bars,
    strategy_partitions,
)
from trading_assets.core.backtest.result import (
    DEFAULT_COMMISSION_BPS,
    DEFAULT_EQUITY,
    DEFAULT_SLIPPAGE_BPS,
)
from trading_assets.core.optimize import WalkForwardConfig, optimize_strategy
from trading_assets.core.optimize.search import (
    DEFAULT_OBJECTIVE,
    DEFAULT_SEED,
    DEFAULT_TEST_SESSIONS,
    DEFAULT_TRAIN_SESSIONS,
    DEFAULT_TRIALS,
)
from trading_assets.core.plots import in_vs_out_of_sample_png, png_data_uri_markdown

OPTIMIZATION_ASSETS = ("optimization_trials", "strategy_optimization")
# The folds table's columns shown in the run's metadata (the stored table has them all).
SHOWN_COLUMNS = [
    "strategy",
    "fold",
    "test_start",
    "best_params",
    "is_sharpe",
    "oos_sharpe",
    "oos_sharpe_default",
    "is_cagr",
    "oos_cagr",
    "is_max_drawdown",
    "oos_max_drawdown",
]


class OptimizationConfig(dg.Config):
    n_trials: int = DEFAULT_TRIALS
    """Optuna trials per walk-forward fold."""
    objective: str = DEFAULT_OBJECTIVE
    """What the search maximises on the training window: sharpe, sortino, cagr, total_return,
    calmar or max_drawdown (the shallowest)."""
    train_sessions: int = DEFAULT_TRAIN_SESSIONS
    """Sessions in each training window (504: two years)."""
    test_sessions: int = DEFAULT_TEST_SESSIONS
    """Sessions in each test window, and how far each fold rolls forward (126: half a year)."""
    anchored: bool = False
    """True: every training window starts at the first session (expanding), not rolling."""
    seed: int = DEFAULT_SEED
    """TPE sampler seed (fold k uses seed + k): the same seed and data give the same trials."""
    equity: float = DEFAULT_EQUITY
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    start: str | None = None
    """First session searched (YYYY-MM-DD); default: the first stored session."""
    end: str | None = None
    """Last session searched; default: the last stored session."""


@dg.multi_asset(
    outs={
        "optimization_trials": dg.AssetOut(
            group_name=PORTFOLIO_GROUP,
            kinds={"pandas", "duckdb"},
            description="Every Optuna trial of the walk-forward search, per strategy and fold: "
            "its parameters (JSON), objective on the training window, Sharpe, CAGR, max "
            "drawdown and trades.",
            metadata={"partition_expr": "strategy", "unique_key": ["strategy", "fold", "trial"]},
        ),
        "strategy_optimization": dg.AssetOut(
            group_name=PORTFOLIO_GROUP,
            kinds={"pandas", "duckdb"},
            description="Per strategy and walk-forward fold: the training and test windows, the "
            "best parameters found on the training window, and their in-sample vs out-of-sample "
            "Sharpe, CAGR and max drawdown side by side (with the defaults' out-of-sample Sharpe).",
            metadata={"partition_expr": "strategy", "unique_key": ["strategy", "fold"]},
        ),
    },
    partitions_def=strategy_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins=STRATEGY_INS,
)
def strategy_optimization(
    context: dg.AssetExecutionContext,
    config: OptimizationConfig,
    symbols: pd.DataFrame,
    raw_prices: pd.DataFrame,
    indicators: pd.DataFrame,
    market_environment: pd.DataFrame,
    watchlist: pd.DataFrame,
    threshold_multipliers: pd.DataFrame,
):
    """How well each strategy's best parameters hold up on data the search never saw. The stored
    history is cut into walk-forward folds (train on two years, test on the next half year, roll
    on, by default); on each training window Optuna's TPE tries `n_trials` parameter sets from
    the strategy's search space and keeps the best Sharpe (or the configured objective), which is
    then traded on the test window. In-sample far above out-of-sample is overfitting."""
    search = WalkForwardConfig(
        n_trials=config.n_trials,
        objective=config.objective,
        train_sessions=config.train_sessions,
        test_sessions=config.test_sessions,
        anchored=config.anchored,
        seed=config.seed,
    )
    bars = strategy_bars(symbols, raw_prices, indicators, config.start, config.end)
    engine = engine_inputs(config, market_environment, watchlist, threshold_multipliers)
    trials_out, folds_out, plots, speed, untested = [], [], {}, {}, {}
    for strategy in context.partition_keys:
        result = optimize_strategy(bars, strategy, search, **engine)
        context.log.info(
            f"{strategy}: {len(result.folds)} folds x {search.n_trials} trials in "
            f"{result.seconds:.1f} s ({result.trials_per_second:.1f} trials/s)"
        )
        trials_out.append(result.trials)
        folds_out.append(result.folds)
        speed[strategy] = round(result.trials_per_second, 2)
        untested[strategy] = result.untested_sessions
        plots[f"plot_{strategy}"] = dg.MetadataValue.md(
            png_data_uri_markdown(
                in_vs_out_of_sample_png(result.folds, f"{strategy}: in-sample vs out-of-sample"),
                f"{strategy} in-sample vs out-of-sample",
            )
        )
    trials = pd.concat(trials_out, ignore_index=True)
    folds = pd.concat(folds_out, ignore_index=True)
    common = {
        "objective": search.objective,
        "trials_per_fold": search.n_trials,
        "trials_per_second": dg.MetadataValue.json(speed),
        # sessions after the last whole test window: searched by no fold, tested by none
        "untested_sessions": dg.MetadataValue.json(untested),
        "symbols": int(bars["symbol"].nunique()),
    }
    yield dg.Output(trials, output_name="optimization_trials",
                    metadata={**common, "trials": len(trials)})  # fmt: skip
    yield dg.Output(
        folds,
        output_name="strategy_optimization",
        metadata={
            **common,
            "folds": len(folds),
            "mean_is_sharpe": _mean(folds["is_sharpe"]),
            "mean_oos_sharpe": _mean(folds["oos_sharpe"]),
            "mean_oos_sharpe_default": _mean(folds["oos_sharpe_default"]),
            "in_vs_out_of_sample": dg.MetadataValue.md(
                folds[SHOWN_COLUMNS].to_markdown(index=False, floatfmt=",.3g")
            ),
            **plots,
        },
    )


def _mean(values: pd.Series) -> float:
    """The mean of the defined values (NaN: a window without a Sharpe), NaN when none."""
    finite = pd.to_numeric(values, errors="coerce").dropna()
    return float(finite.mean()) if len(finite) else math.nan
