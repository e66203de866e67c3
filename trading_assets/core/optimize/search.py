"""``optimize_strategy``: an Optuna TPE search of a strategy's space on each walk-forward fold.

Per fold (folds.py): ``n_trials`` trials, each one run_backtest of the training window's bars
with the trial's parameters, scored by ``objective`` (a key of metrics.performance_summary of
the window's daily equity). The best trial's parameters (the highest score; ties go to the
earliest trial, as Optuna) are then run on the test window, and both windows' Sharpe, CAGR and
max drawdown are reported side by side, with the strategy's default parameters on the test
window beside them (does searching beat not searching?).

Each window is a backtest of its own: it starts flat with ``equity`` and a position still open at
its last session is marked at that close.

A score is undefined (NaN) when the window's equity never moves (no trade: no Sharpe) or, for
cagr and calmar, when performance_summary says so. Optuna is told -inf for it, so an undefined
score ranks below every defined one; when no trial of a fold defines it, every trial ties and
the first one is evaluated out of sample (its is_objective NaN says so).

Determinism: the sampler is TPESampler(seed=seed + fold index), trials run one after another,
and run_backtest is deterministic, so the same bars and config give the same trials and best
parameters on every run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from trading_assets.core.backtest import BacktestInputError, run_backtest
from trading_assets.core.frames import require_columns
from trading_assets.core.metrics import performance_summary, returns_from_equity
from trading_assets.core.optimize.folds import check_windows, walk_forward
from trading_assets.core.optimize.spaces import OptimizerConfigError, Space, space_for, suggest

# The performance_summary keys an optimisation may maximise (max_drawdown is negative: the
# shallowest drawdown scores highest).
OBJECTIVES: tuple[str, ...] = (
    "sharpe",
    "sortino",
    "cagr",
    "total_return",
    "calmar",
    "max_drawdown",
)
DEFAULT_OBJECTIVE = "sharpe"
DEFAULT_TRIALS = 50
DEFAULT_TRAIN_SESSIONS = 504  # two years of sessions
DEFAULT_TEST_SESSIONS = 126  # then half a year unseen
DEFAULT_SEED = 42
# The metrics reported for each window beside the objective.
WINDOW_METRICS: tuple[str, ...] = ("sharpe", "cagr", "max_drawdown")

TRIAL_COLUMNS: tuple[str, ...] = (
    "strategy",
    "fold",
    "trial",
    "params",  # JSON, keys sorted
    "objective_value",  # NaN when undefined (see the module docstring)
    *WINDOW_METRICS,
    "trades",
)
FOLD_COLUMNS: tuple[str, ...] = (
    "strategy",
    "fold",
    "train_start",
    "train_end",
    "test_start",
    "test_end",
    "train_sessions",
    "test_sessions",
    "objective",
    "best_trial",
    "best_params",  # JSON, keys sorted
    "is_objective",
    "oos_objective",
    "is_sharpe",
    "oos_sharpe",
    "is_cagr",
    "oos_cagr",
    "is_max_drawdown",
    "oos_max_drawdown",
    "is_trades",
    "oos_trades",
    "oos_sharpe_default",  # the strategy's default parameters on the same test window
)


@dataclass(frozen=True)
class WalkForwardConfig:
    n_trials: int = DEFAULT_TRIALS
    objective: str = DEFAULT_OBJECTIVE
    train_sessions: int = DEFAULT_TRAIN_SESSIONS
    test_sessions: int = DEFAULT_TEST_SESSIONS
    anchored: bool = False
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int):
            raise OptimizerConfigError(f"n_trials must be a whole number, got {self.n_trials!r}")
        if self.n_trials < 1:
            raise OptimizerConfigError(f"n_trials={self.n_trials} must be at least 1")
        if self.objective not in OBJECTIVES:
            raise OptimizerConfigError(
                f"unknown objective {self.objective!r}; choose one of {list(OBJECTIVES)}"
            )
        check_windows(self.train_sessions, self.test_sessions)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise OptimizerConfigError(f"seed must be a whole number >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class OptimizationResult:
    trials: pd.DataFrame  # TRIAL_COLUMNS, one row per (fold, trial)
    folds: pd.DataFrame  # FOLD_COLUMNS, one row per fold
    untested_sessions: int  # sessions after the last test window
    seconds: float  # wall time of the search (every backtest and Optuna's own work)

    @property
    def trials_per_second(self) -> float:
        return len(self.trials) / self.seconds if self.seconds > 0 else math.nan


def optimize_strategy(
    bars: pd.DataFrame,
    strategy: str,
    config: WalkForwardConfig | None = None,
    *,
    spaces: Mapping[str, Space] | None = None,
    **backtest_kwargs: Any,
) -> OptimizationResult:
    """Walk-forward search of ``strategy``'s space (spaces.py, or ``spaces``) over ``bars`` (as
    run_backtest takes them). ``backtest_kwargs`` go to every run_backtest (equity, costs,
    market_environment, watchlist, threshold_multipliers); a side frame with a ``date`` column is
    cut to each window's sessions like the bars (the same result, as no strategy reads a side
    row of a date without bars, and 2-3x faster for watchlist_momentum, which validates its
    whole watchlist on every run).

    Raises OptimizerConfigError for a strategy without a space, a bad space, bad windows or too
    few sessions for one fold; run_backtest's BacktestInputError for bars it cannot use.
    """
    config = WalkForwardConfig() if config is None else config
    # Optuna logs every trial at INFO; the asset reports the trials itself.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_for(strategy, spaces)
    require_columns(bars, ("date",), "bars", BacktestInputError)
    if bars["date"].isna().any():
        # A window is cut by date: a row without one would silently fall out of every window.
        raise BacktestInputError(f"bars: {int(bars['date'].isna().sum())} row(s) without a date")
    sessions = sorted(pd.unique(bars["date"]))
    plan = walk_forward(sessions, config.train_sessions, config.test_sessions,
                        anchored=config.anchored)  # fmt: skip
    side = _side_inputs(backtest_kwargs)
    began = time.perf_counter()
    trial_rows: list[dict[str, Any]] = []
    fold_rows: list[dict[str, Any]] = []
    for fold in plan.folds:
        train = _window(bars, sessions, fold.train_start, fold.train_stop, side)
        test = _window(bars, sessions, fold.test_start, fold.test_stop, side)

        def evaluate(window: Window, params: dict[str, Any] | None) -> dict[str, float]:
            return _window_metrics(window, strategy, params, config.objective)

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed + fold.index)
        )
        rows = []
        for _ in range(config.n_trials):
            trial = study.ask()
            params = suggest(trial, space)
            scores = evaluate(train, params)
            value = scores["objective_value"]
            study.tell(trial, value if math.isfinite(value) else -math.inf)
            rows.append({"trial": trial.number, "params": params, **scores})
        best = rows[study.best_trial.number]
        oos = evaluate(test, best["params"])
        default = evaluate(test, None)
        trial_rows += [
            {"strategy": strategy, "fold": fold.index, **r, "params": _json(r["params"])}
            for r in rows
        ]
        fold_rows.append(
            {
                "strategy": strategy,
                "fold": fold.index,
                "train_start": _date(sessions[fold.train_start]),
                "train_end": _date(sessions[fold.train_stop - 1]),
                "test_start": _date(sessions[fold.test_start]),
                "test_end": _date(sessions[fold.test_stop - 1]),
                "train_sessions": fold.train_stop - fold.train_start,
                "test_sessions": fold.test_stop - fold.test_start,
                "objective": config.objective,
                "best_trial": best["trial"],
                "best_params": _json(best["params"]),
                "is_objective": best["objective_value"],
                "oos_objective": oos["objective_value"],
                **{f"is_{m}": best[m] for m in WINDOW_METRICS},
                **{f"oos_{m}": oos[m] for m in WINDOW_METRICS},
                "is_trades": best["trades"],
                "oos_trades": oos["trades"],
                "oos_sharpe_default": default["sharpe"],
            }
        )
    seconds = time.perf_counter() - began
    return OptimizationResult(
        trials=pd.DataFrame(trial_rows, columns=list(TRIAL_COLUMNS)),
        folds=pd.DataFrame(fold_rows, columns=list(FOLD_COLUMNS)),
        untested_sessions=plan.untested,
        seconds=seconds,
    )


@dataclass(frozen=True)
class Window:
    bars: pd.DataFrame
    backtest_kwargs: dict[str, Any]  # the side frames cut to the window, the rest as given


@dataclass(frozen=True)
class _Side:
    kwargs: dict[str, Any]
    dated: dict[str, pd.Series]  # name -> the side frame's dates as Timestamps


def _side_inputs(backtest_kwargs: Mapping[str, Any]) -> _Side:
    dated = {
        name: pd.to_datetime(value["date"])
        for name, value in backtest_kwargs.items()
        if isinstance(value, pd.DataFrame) and "date" in value.columns
    }
    return _Side(kwargs=dict(backtest_kwargs), dated=dated)


def _window(bars: pd.DataFrame, sessions: list, start: int, stop: int, side: _Side) -> Window:
    """The bars of sessions[start:stop] (both ends read from the sorted sessions), and the side
    frames' rows of the same dates."""
    first, last = sessions[start], sessions[stop - 1]
    dates = bars["date"]
    kwargs = dict(side.kwargs)
    for name, stamps in side.dated.items():
        inside = (stamps >= pd.Timestamp(first)) & (stamps <= pd.Timestamp(last))
        kwargs[name] = kwargs[name][inside.to_numpy()]
    return Window(bars=bars[(dates >= first) & (dates <= last)], backtest_kwargs=kwargs)


def _window_metrics(
    window: Window, strategy: str, params: dict[str, Any] | None, objective: str
) -> dict[str, float]:
    equity = run_backtest(window.bars, strategy, params, **window.backtest_kwargs)
    summary = (
        performance_summary(returns_from_equity(equity.equity)) if len(equity.equity) > 1 else {}
    )
    scores = {m: float(summary.get(m, math.nan)) for m in WINDOW_METRICS}
    return {
        "objective_value": float(summary.get(objective, math.nan)),
        **scores,
        "trades": len(equity.trades),
    }


def _json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _date(value: Any) -> Any:
    """A session as datetime.date, whether the bars carry dates or Timestamps."""
    return pd.Timestamp(value).date()
