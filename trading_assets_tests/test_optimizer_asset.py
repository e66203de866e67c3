"""strategy_optimization (with optimization_trials) materialised through Dagster on the bundled
sample into a DuckDB file: the stored rows read back equal optimize_strategy on the same stored
bars, partitions are stored side by side, a rerun replaces its partition, and a bad config fails
the run with the optimizer's named error."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from trading_assets.assets.optimization import OPTIMIZATION_ASSETS, strategy_optimization
from trading_assets.core.backtest import run_backtest
from trading_assets.core.metrics import performance_summary, returns_from_equity
from trading_assets.core.optimize import FOLD_COLUMNS, TRIAL_COLUMNS, WalkForwardConfig
from trading_assets.core.optimize import optimize_strategy as optimize
from trading_assets_tests.test_assets_portfolio import (
    DAILY,
    bars_from,
    query,
    resources,
    run_daily,
)

RUN_CONFIG = {"n_trials": 6, "train_sessions": 252, "test_sessions": 126, "seed": 11}


def run_optimization(db, reports, strategy: str, config: dict | None = None):
    return dg.materialize(
        [*DAILY, strategy_optimization],
        selection=[strategy_optimization],
        partition_key=strategy,
        resources=resources(db, reports),
        run_config={"ops": {"strategy_optimization": {"config": config or RUN_CONFIG}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The daily graph over 2021-2024 of the sample, then the rsi_mean_reversion partition."""
    root = tmp_path_factory.mktemp("optimizer")
    db, reports = root / "optimizer.duckdb", root / "reports"
    assert run_daily(db, reports).success
    result = run_optimization(db, reports, "rsi_mean_reversion")
    assert result.success
    return db, reports, result


def stored_folds(db, strategy: str) -> pd.DataFrame:
    frame = query(db, f"SELECT * FROM strategy_optimization WHERE strategy = '{strategy}'")
    for column in ("train_start", "train_end", "test_start", "test_end"):
        frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame.sort_values("fold").reset_index(drop=True)


def test_stored_rows_equal_the_optimizer_on_the_stored_bars(stored):
    db, _, _ = stored
    trials = query(db, "SELECT * FROM optimization_trials ORDER BY fold, trial")
    folds = stored_folds(db, "rsi_mean_reversion")
    assert list(trials.columns) == list(TRIAL_COLUMNS)
    assert list(folds.columns) == list(FOLD_COLUMNS)
    expected = optimize(bars_from(db), "rsi_mean_reversion", WalkForwardConfig(**RUN_CONFIG))
    assert len(folds) == len(expected.folds) >= 3
    assert len(trials) == len(folds) * RUN_CONFIG["n_trials"]
    pd.testing.assert_frame_equal(
        folds, expected.folds, check_dtype=False, check_exact=False, rtol=1e-12
    )
    pd.testing.assert_frame_equal(
        trials, expected.trials, check_dtype=False, check_exact=False, rtol=1e-12
    )
    assert set(trials["strategy"]) == {"rsi_mean_reversion"}
    assert all(
        set(json.loads(p)) == {"rsi_entry_below", "rsi_exit_above"} for p in trials["params"]
    )


def test_metadata_holds_the_plot_and_the_speed(stored):
    db, _, result = stored
    materialized = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(materialized) == set(OPTIMIZATION_ASSETS)
    meta = materialized["strategy_optimization"]
    assert meta["plot_rsi_mean_reversion"].value.startswith("![rsi_mean_reversion in-sample")
    assert "data:image/png;base64," in meta["plot_rsi_mean_reversion"].value
    assert meta["trials_per_second"].value["rsi_mean_reversion"] > 0
    assert "oos_sharpe" in meta["in_vs_out_of_sample"].value
    assert meta["objective"].value == "sharpe"
    sessions = bars_from(db)["date"].nunique()
    untested = meta["untested_sessions"].value["rsi_mean_reversion"]
    assert untested == sessions - 252 - meta["folds"].value * 126
    assert 0 <= untested < 126
    assert materialized["optimization_trials"]["trials"].value == meta["folds"].value * 6


def test_partitions_are_stored_side_by_side_and_a_rerun_replaces_its_own(stored):
    db, reports, _ = stored
    before = stored_folds(db, "rsi_mean_reversion")
    assert run_optimization(db, reports, "ma_crossover").success
    again = run_optimization(db, reports, "rsi_mean_reversion")
    assert again.success
    counts = query(
        db, "SELECT strategy, count(*) AS n FROM strategy_optimization GROUP BY 1 ORDER BY 1"
    )
    assert counts["strategy"].tolist() == ["ma_crossover", "rsi_mean_reversion"]
    assert counts["n"].tolist() == [len(before)] * 2
    # same seed, same stored bars: the rerun stores the same rows in place of the old ones
    pd.testing.assert_frame_equal(stored_folds(db, "rsi_mean_reversion"), before)
    trials = query(db, "SELECT strategy, count(*) AS n FROM optimization_trials GROUP BY 1")
    assert sorted(trials["n"]) == [len(before) * 6] * 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"objective": "alpha"}, "unknown objective 'alpha'"),
        ({"n_trials": 0}, "n_trials=0 must be at least 1"),
        ({"train_sessions": 5000}, "cannot hold one fold of train_sessions=5000"),
    ],
)
def test_a_bad_config_fails_the_run_with_the_named_error(stored, override, message):
    db, reports, _ = stored
    rows = query(db, "SELECT count(*) AS n FROM strategy_optimization")["n"].iloc[0]
    result = run_optimization(db, reports, "stdev", {**RUN_CONFIG, **override})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert message in failure.step_failure_data.error.cause.message
    assert query(db, "SELECT count(*) AS n FROM strategy_optimization")["n"].iloc[0] == rows


def test_watchlist_momentum_windows_equal_run_backtest_with_the_whole_side_frames(stored):
    """The optimizer cuts the watchlist and the environment to each window like the bars; the
    fold's numbers equal run_backtest on the window's bars with the whole frames."""
    db, _, _ = stored
    bars = bars_from(db)
    side = {
        name: query(db, f"SELECT * FROM {name}").assign(date=lambda f: f["date"].dt.date)
        for name in ("watchlist", "market_environment")
    }
    config = WalkForwardConfig(n_trials=4, train_sessions=252, test_sessions=252, seed=5)
    result = optimize(bars, "watchlist_momentum", config, **side)
    assert len(result.folds) >= 2
    assert result.trials["trades"].sum() > 0
    for row in result.folds.itertuples():
        params = json.loads(row.best_params)
        for prefix, first, last in (
            ("is", row.train_start, row.train_end),
            ("oos", row.test_start, row.test_end),
        ):
            window = bars[(bars["date"] >= first) & (bars["date"] <= last)]
            whole = run_backtest(window, "watchlist_momentum", params, **side)
            summary = performance_summary(returns_from_equity(whole.equity))
            assert getattr(row, f"{prefix}_trades") == len(whole.trades)
            for metric in ("sharpe", "cagr", "max_drawdown"):
                assert getattr(row, f"{prefix}_{metric}") == pytest.approx(
                    summary[metric], nan_ok=True
                )
