"""The walk-forward optimizer (trading_assets/core/optimize): folds, determinism, a planted optimum
found, the in-sample vs out-of-sample numbers against run_backtest on the same windows, and the
config errors. Bars are synthetic prices run through compute_indicators (the real indicators)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest import BacktestInputError, run_backtest
from trading_assets.core.backtest.multipliers import MULTIPLIER_COLUMNS, default_multipliers
from trading_assets.core.backtest.params import resolve_params
from trading_assets.core.indicators import compute_indicators
from trading_assets.core.metrics import performance_summary, returns_from_equity
from trading_assets.core.optimize import (
    FOLD_COLUMNS,
    SEARCH_SPACES,
    TRIAL_COLUMNS,
    Choice,
    FloatRange,
    OptimizerConfigError,
    WalkForwardConfig,
    check_space,
    optimize_strategy,
    space_for,
    walk_forward,
)
from trading_assets.core.optimize.spaces import suggest
from trading_assets.core.plots import PNG_SIGNATURE, PlotInputError, in_vs_out_of_sample_png

PERIOD = 40  # sessions per cycle of the planted sine: its RSI runs from 18.5 to 81.5
SMALL = WalkForwardConfig(n_trials=12, train_sessions=252, test_sessions=126)


def sine_bars(
    n: int = 800, symbols: int = 1, noise: float = 0.0, period: int = PERIOD, warm_up: int = 300
) -> pd.DataFrame:
    """``n`` sessions of closes 100 + 10 sin(2 pi t / period) (+ noise, a different phase per
    symbol), each open at the previous close, with compute_indicators' columns computed over
    ``warm_up`` earlier sessions too (dropped), as the indicators asset computes them over the
    whole history: no window starts with the 252-session ATR rank still undefined."""
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2017-01-02", periods=n + warm_up)
    n += warm_up
    frames = []
    for k in range(symbols):
        t = np.arange(n) + 7 * k
        close = 100.0 + 10.0 * np.sin(2 * np.pi * t / period) + noise * rng.standard_normal(n)
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"S{k}",
                    "date": dates,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.001,
                    "low": np.minimum(open_, close) * 0.999,
                    "close": close,
                    "volume": 1e6,
                }
            )
        )
    prices = pd.concat(frames, ignore_index=True)
    indicators = compute_indicators(prices).drop(columns=["close"], errors="ignore")
    bars = prices.merge(indicators, on=["symbol", "date"], validate="one_to_one")
    return bars[bars["date"] >= dates[warm_up]].reset_index(drop=True)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return sine_bars(symbols=3, noise=0.8)


@pytest.fixture(scope="module")
def stdev_run(bars):
    return optimize_strategy(bars, "stdev", SMALL)


# --- folds ------------------------------------------------------------------------------------


def test_rolling_folds_tile_the_test_windows_after_their_training():
    plan = walk_forward(list(range(100)), 30, 20)
    spans = [(f.train_start, f.train_stop, f.test_start, f.test_stop) for f in plan.folds]
    assert spans == [(0, 30, 30, 50), (20, 50, 50, 70), (40, 70, 70, 90)]
    assert plan.untested == 10  # 90..99: less than one test window left


def test_anchored_folds_keep_the_first_session():
    plan = walk_forward(list(range(100)), 30, 20, anchored=True)
    assert [(f.train_start, f.train_stop) for f in plan.folds] == [(0, 30), (0, 50), (0, 70)]
    assert [f.test_start for f in plan.folds] == [30, 50, 70]


def test_exactly_one_fold_fits():
    plan = walk_forward(list(range(50)), 30, 20)
    assert len(plan.folds) == 1 and plan.untested == 0


def test_no_test_window_overlaps_its_training_and_they_roll_forward_unseen(bars, stdev_run):
    folds = stdev_run.folds
    sessions = sorted(bars["date"].dt.date.unique())
    assert len(folds) == (len(sessions) - 252) // 126 == 4
    assert stdev_run.untested_sessions == len(sessions) - 252 - 4 * 126
    for row in folds.itertuples():
        train = [d for d in sessions if row.train_start <= d <= row.train_end]
        test = [d for d in sessions if row.test_start <= d <= row.test_end]
        assert len(train) == row.train_sessions == 252
        assert len(test) == row.test_sessions == 126
        assert row.train_end < row.test_start
        # The test window starts at the session right after the training window.
        assert sessions.index(row.test_start) == sessions.index(row.train_end) + 1
    for before, after in itertools.pairwise(folds.itertuples()):
        # contiguous, unseen test windows: the next starts the session after this one ends ...
        assert sessions.index(after.test_start) == sessions.index(before.test_end) + 1
        # ... and the next fold's training window ends where this test window ended.
        assert after.train_end == before.test_end
        # every session of a test window lies after every session its own search trained on
        assert after.test_start > after.train_end


def test_out_of_sample_numbers_are_run_backtest_on_the_test_window_alone(bars, stdev_run):
    """The fold's IS and OOS metrics equal run_backtest + performance_summary on exactly that
    window's bars with the best parameters, and the defaults' OOS Sharpe with no parameters."""
    dates = bars["date"].dt.date
    for row in stdev_run.folds.itertuples():
        params = json.loads(row.best_params)
        for prefix, first, last in (
            ("is", row.train_start, row.train_end),
            ("oos", row.test_start, row.test_end),
        ):
            window = bars[(dates >= first) & (dates <= last)]
            result = run_backtest(window, "stdev", params)
            summary = performance_summary(returns_from_equity(result.equity))
            assert result.equity.index[0] == first
            assert result.equity.index[-1] == last
            for metric in ("sharpe", "cagr", "max_drawdown"):
                assert getattr(row, f"{prefix}_{metric}") == pytest.approx(
                    summary[metric], nan_ok=True
                )
            assert getattr(row, f"{prefix}_trades") == len(result.trades)
        window = bars[(dates >= row.test_start) & (dates <= row.test_end)]
        default = performance_summary(returns_from_equity(run_backtest(window, "stdev").equity))
        assert row.oos_sharpe_default == pytest.approx(default["sharpe"], nan_ok=True)


def test_stdev_multipliers_are_cut_to_each_window_with_the_same_result(bars):
    """threshold_multipliers, like every side frame with a date, is cut to the window: the fold's
    numbers equal run_backtest on the window's bars with the whole multipliers frame."""
    sessions = sorted(bars["date"].unique())
    rng = np.random.default_rng(3)
    multipliers = default_multipliers([pd.Timestamp(d).date() for d in sessions]).assign(
        **{c: rng.uniform(0.5, 2.0, len(sessions)).round(2) for c in MULTIPLIER_COLUMNS}
    )
    config = WalkForwardConfig(n_trials=4, train_sessions=252, test_sessions=252)
    result = optimize_strategy(bars, "stdev", config, threshold_multipliers=multipliers)
    plain = optimize_strategy(bars, "stdev", config)
    assert result.folds["is_sharpe"].tolist() != plain.folds["is_sharpe"].tolist()
    dates = bars["date"].dt.date
    for row in result.folds.itertuples():
        params = json.loads(row.best_params)
        window = bars[(dates >= row.test_start) & (dates <= row.test_end)]
        whole = run_backtest(window, "stdev", params, threshold_multipliers=multipliers)
        summary = performance_summary(returns_from_equity(whole.equity))
        assert row.oos_trades == len(whole.trades)
        assert row.oos_sharpe == pytest.approx(summary["sharpe"], nan_ok=True)


# --- the search -------------------------------------------------------------------------------


def test_trials_and_best_params_are_stored_per_fold(stdev_run):
    trials, folds = stdev_run.trials, stdev_run.folds
    assert list(trials.columns) == list(TRIAL_COLUMNS)
    assert list(folds.columns) == list(FOLD_COLUMNS)
    assert len(trials) == len(folds) * SMALL.n_trials
    assert trials.groupby("fold")["trial"].apply(list).tolist() == [
        list(range(SMALL.n_trials))
    ] * len(folds)
    for row in folds.itertuples():
        fold_trials = trials[trials["fold"] == row.fold]
        best = fold_trials[fold_trials["trial"] == row.best_trial].iloc[0]
        assert best["params"] == row.best_params
        # the best is the highest objective of the fold, the earliest of ties
        assert fold_trials["objective_value"].notna().any()
        assert best["objective_value"] == fold_trials["objective_value"].max()
        assert row.is_objective == row.is_sharpe == best["sharpe"]
        ties = fold_trials[fold_trials["objective_value"] == best["objective_value"]]
        assert row.best_trial == ties["trial"].min()
        # every trial's parameters lie in the space and the engine accepts them
        for text in fold_trials["params"]:
            params = json.loads(text)
            resolve_params("stdev", params)
            for name, dim in SEARCH_SPACES["stdev"].items():
                assert dim.low <= params[name] <= dim.high
                steps = (params[name] - dim.low) / dim.step
                assert abs(steps - round(steps)) < 1e-6


def test_same_seed_same_trials_and_best_params(bars, stdev_run):
    again = optimize_strategy(bars, "stdev", SMALL)
    pd.testing.assert_frame_equal(again.trials, stdev_run.trials)
    pd.testing.assert_frame_equal(again.folds, stdev_run.folds)


def test_another_seed_samples_other_parameters(bars, stdev_run):
    other = optimize_strategy(
        bars, "stdev", WalkForwardConfig(n_trials=12, train_sessions=252, test_sessions=126, seed=1)
    )
    assert other.trials["params"].tolist() != stdev_run.trials["params"].tolist()


def test_the_search_finds_a_planted_rsi_optimum():
    """On a pure 40-session sine the RSI bottoms at 18.5 and tops at 81.5 every cycle. Entering
    below a threshold under 18.5 never trades; above it, a higher threshold buys earlier in the
    fall, and an exit threshold below 81.5 sells earlier in the rise (above it, never). So on a
    grid of fives the best CAGR is entry 20, exit 80: the planted optimum, checked here against
    an exhaustive grid of run_backtest and then found by the search in every fold."""
    bars = sine_bars()
    rsi = bars["rsi_14"]
    assert 18.0 < rsi.min() < 19.0 < 20.0 and 80.0 < 81.0 < rsi.max() < 82.0
    entries, exits = range(10, 45, 5), range(60, 95, 5)
    space = {
        "rsi_mean_reversion": {
            "rsi_entry_below": FloatRange(10.0, 40.0, 5.0),
            "rsi_exit_above": FloatRange(60.0, 90.0, 5.0),
        }
    }
    config = WalkForwardConfig(
        n_trials=40, objective="cagr", train_sessions=252, test_sessions=126, seed=3
    )
    result = optimize_strategy(bars, "rsi_mean_reversion", config, spaces=space)
    dates = bars["date"].dt.date
    for row in result.folds.itertuples():
        window = bars[(dates >= row.train_start) & (dates <= row.train_end)]
        grid = {}
        for entry, exit_ in itertools.product(entries, exits):
            params = {"rsi_entry_below": float(entry), "rsi_exit_above": float(exit_)}
            equity = run_backtest(window, "rsi_mean_reversion", params).equity
            grid[(entry, exit_)] = performance_summary(returns_from_equity(equity))["cagr"]
        ranked = sorted(grid, key=lambda k: -grid[k] if math.isfinite(grid[k]) else math.inf)
        assert ranked[0] == (20, 80)
        assert grid[(20, 80)] > grid[ranked[1]] + 0.01  # clearly best, not a tie
        assert json.loads(row.best_params) == {"rsi_entry_below": 20.0, "rsi_exit_above": 80.0}
        assert row.is_objective == pytest.approx(grid[(20, 80)])
        # the planted optimum holds out of sample too: the series repeats
        assert row.oos_cagr > 0.5


def test_a_fold_where_no_trial_trades_ties_every_trial_and_keeps_the_first():
    """Entry thresholds under the sine's lowest RSI never trade: no Sharpe anywhere. Every trial
    ties (Optuna is told -inf), the first is evaluated out of sample, the objective stays NaN."""
    space = {
        "rsi_mean_reversion": {
            "rsi_entry_below": FloatRange(5.0, 15.0, 1.0),
            "rsi_exit_above": FloatRange(60.0, 90.0, 5.0),
        }
    }
    result = optimize_strategy(sine_bars(), "rsi_mean_reversion", SMALL, spaces=space)
    assert result.trials["objective_value"].isna().all()
    assert (result.trials["trades"] == 0).all()
    assert (result.folds["best_trial"] == 0).all()
    assert result.folds["is_objective"].isna().all() and result.folds["oos_sharpe"].isna().all()
    assert (result.folds["is_max_drawdown"] == 0.0).all()


@pytest.mark.parametrize("strategy", ["ma_crossover", "rsi_mean_reversion"])
def test_sleeve_strategies_search_their_declared_space(bars, strategy):
    result = optimize_strategy(bars, strategy, SMALL)
    names = set(SEARCH_SPACES[strategy])
    assert all(set(json.loads(p)) == names for p in result.trials["params"])
    assert result.folds["oos_sharpe"].notna().all()


# --- spaces and config errors -----------------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(SEARCH_SPACES))
def test_every_declared_space_passes_the_engines_validation(strategy):
    space = space_for(strategy)
    assert set(space) <= set(resolve_params(strategy, None).__dataclass_fields__)
    # the corners are checked by check_space; a random interior point resolves as well
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        resolve_params(strategy, suggest(study.ask(), space))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_trials": 0}, "n_trials=0 must be at least 1"),
        ({"n_trials": 2.5}, "n_trials must be a whole number"),
        ({"objective": "alpha"}, "unknown objective 'alpha'"),
        ({"train_sessions": 10}, "train_sessions=10 is below the minimum of 20"),
        ({"test_sessions": 0}, "test_sessions=0 is below the minimum of 5"),
        ({"test_sessions": True}, "test_sessions must be a whole number"),
        ({"train_sessions": "252"}, "train_sessions must be a whole number"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
    ],
)
def test_bad_config_is_a_named_error(kwargs, message):
    with pytest.raises(OptimizerConfigError, match=message):
        WalkForwardConfig(**kwargs)


def test_too_few_sessions_for_one_fold(bars):
    config = WalkForwardConfig(n_trials=1, train_sessions=700, test_sessions=126)
    with pytest.raises(OptimizerConfigError, match="800 sessions cannot hold one fold"):
        optimize_strategy(bars, "stdev", config)


def test_empty_bars_hold_no_fold(bars):
    with pytest.raises(OptimizerConfigError, match="0 sessions cannot hold one fold"):
        optimize_strategy(bars.iloc[:0], "stdev", SMALL)


def test_a_row_without_a_date_is_refused_not_dropped(bars):
    broken = bars.copy()
    broken.loc[5, "date"] = pd.NaT
    with pytest.raises(BacktestInputError, match="1 row"):
        optimize_strategy(broken, "stdev", SMALL)


def test_a_strategy_without_a_space_is_a_named_error(bars):
    spaces = {"ma_crossover": SEARCH_SPACES["ma_crossover"]}
    with pytest.raises(OptimizerConfigError, match="no search space declared for strategy 'stdev'"):
        optimize_strategy(bars, "stdev", SMALL, spaces=spaces)
    with pytest.raises(OptimizerConfigError, match="unknown strategy 'macd'"):
        optimize_strategy(bars, "macd", SMALL)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "the search space is empty"),
        ({"rsi_entry_below": FloatRange(40.0, 20.0, 1.0)}, "needs low < high"),
        ({"rsi_entry_below": FloatRange(20.0, 40.0, 0.0)}, "step > 0"),
        ({"rsi_entry_below": FloatRange(20.0, 40.0, 3.0)}, "not a whole number of steps"),
        ({"rsi_entry_below": FloatRange(20.0, math.inf, 1.0)}, "needs finite numbers"),
        ({"rsi_entry_below": Choice(())}, "distinct values"),
        ({"rsi_entry_below": (20, 30)}, "expected a FloatRange or a Choice"),
        # entry 60 with exit 55 is a corner the engine refuses (entry must be below exit)
        (
            {
                "rsi_entry_below": FloatRange(10.0, 60.0, 5.0),
                "rsi_exit_above": FloatRange(55.0, 90.0, 5.0),
            },
            "rsi_entry_below=60 must be below rsi_exit_above=55",
        ),
        ({"rsi_entry_below": FloatRange(0.0, 40.0, 5.0)}, r"must lie in \(0, 100\)"),
        ({"rsi_period": FloatRange(5.0, 30.0, 1.0)}, r"unknown parameter\(s\) \['rsi_period'\]"),
    ],
)
def test_a_bad_space_is_a_named_error(space, message):
    with pytest.raises(OptimizerConfigError, match=message):
        check_space("rsi_mean_reversion", space)


def test_a_crossover_space_with_one_column_on_both_sides_is_refused():
    space = {"fast_average": Choice(("sma_20", "sma_50")), "slow_average": Choice(("sma_50",))}
    with pytest.raises(OptimizerConfigError, match="both 'sma_50'"):
        check_space("ma_crossover", space)


# --- the plot ---------------------------------------------------------------------------------


def test_in_vs_out_of_sample_plot_is_a_png(stdev_run):
    png = in_vs_out_of_sample_png(stdev_run.folds, "stdev")
    assert png.startswith(PNG_SIGNATURE) and len(png) < 200_000
    nan_folds = stdev_run.folds.assign(oos_sharpe=math.nan)  # an undefined value draws no bar
    assert in_vs_out_of_sample_png(nan_folds).startswith(PNG_SIGNATURE)
    with pytest.raises(PlotInputError, match="no fold"):
        in_vs_out_of_sample_png(stdev_run.folds.iloc[:0])
    with pytest.raises(PlotInputError, match="oos_cagr"):
        in_vs_out_of_sample_png(stdev_run.folds.drop(columns=["oos_cagr"]))
