"""Benchmark: the walk-forward optimizer (optimize_strategy) in trials per second, per strategy.

Data: the same 500 symbols x last 2,520 SPY sessions of the shared prices_daily.parquet as
bench_backtest.py (bench_indicators' load_real) joined with compute_indicators' columns; the
watchlist_momentum inputs (compute_market_environment, screen_watchlist with the shared
fundamentals) built once, outside the timing.

Timed, warm (numba compiled first): optimize_strategy per strategy with the asset's default
windows (train 504 sessions, test 126, rolling) and --trials trials per fold (default 20). A
trial is one run_backtest of its training window plus Optuna's TPE (ask/tell); each fold adds
two test-window backtests (the best and the default parameters), counted in the wall time, not
in the trials. Beside it: the median run_backtest of one training window with the default
parameters, and the same TPE search told random scores (the sampler's own cost per trial).

Run: python benchmarks/bench_optimizer.py [--write-doc] [--trials N] [--strategies a,b]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import optuna
import pandas as pd
from _doc import machine, publish  # benchmarks/ is on sys.path
from bench_backtest import strategy_inputs

from trading_assets.core.backtest import STRATEGIES, run_backtest
from trading_assets.core.optimize import WalkForwardConfig, optimize_strategy, space_for
from trading_assets.core.optimize.spaces import suggest

ENGINE_SAMPLES = 7  # training-window backtests timed for the engine's share


def optuna_alone(strategy: str, config: WalkForwardConfig, folds: int) -> float:
    """Seconds per trial of the same TPE search (same space, seeds and trial count per fold)
    told a made-up score instead of a backtest: the sampler's own cost."""
    space = space_for(strategy)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for fold in range(folds):
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed + fold)
        )
        for _ in range(config.n_trials):
            trial = study.ask()
            suggest(trial, space)
            study.tell(trial, float(rng.normal()))
    return (time.perf_counter() - t0) / (folds * config.n_trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--write-doc", action="store_true", help="update this section of docs/benchmarks.md"
    )
    args = parser.parse_args()
    strategies = args.strategies.split(",")

    host = machine()
    _, bars, side = strategy_inputs()
    config = WalkForwardConfig(n_trials=args.trials)
    sessions = np.sort(bars["date"].unique())
    # The first training window, its side frames cut to it as optimize_strategy cuts them.
    train_end = sessions[config.train_sessions - 1]
    first_train = bars[bars["date"] <= train_end]
    train_side = {name: frame[frame["date"] <= train_end] for name, frame in side.items()}
    for strategy in strategies:  # numba JIT or cache load, outside the timing
        run_backtest(first_train, strategy, **train_side)

    rows = []
    for strategy in strategies:
        engine = []
        for _ in range(ENGINE_SAMPLES):
            t0 = time.perf_counter()
            run_backtest(first_train, strategy, **train_side)
            engine.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = optimize_strategy(bars, strategy, config, **side)
        wall = time.perf_counter() - t0
        trials = len(result.trials)
        per_trial = result.seconds / trials
        engine_median = statistics.median(engine)
        sampler = optuna_alone(strategy, config, len(result.folds))
        rows.append(
            f"| {strategy} | {len(result.folds)} | {trials:,} | {wall:.1f} | "
            f"**{trials / wall:.1f}** | {per_trial * 1000:.0f} | {engine_median * 1000:.0f} | "
            f"{sampler * 1000:.1f} |"
        )
        print(rows[-1], flush=True)

    lines = [
        "## Walk-forward optimizer (`bench_optimizer.py`)",
        "",
        "Command: `python benchmarks/bench_optimizer.py --write-doc`.",
        "",
        f"Data: shared prices_daily.parquet, last 2,520 SPY sessions, "
        f"{bars['symbol'].nunique()} symbols, {len(bars):,} rows joined with compute_indicators' "
        f"columns; watchlist {len(side['watchlist']):,} rows (built outside the timing). Walk-forward: "
        f"train {config.train_sessions} sessions, test {config.test_sessions}, rolling; "
        f"{config.n_trials} TPE trials per fold, objective {config.objective}.",
        f"Machine: {host}. optuna {optuna.__version__}, pandas {pd.__version__}.",
        "",
        "| strategy | folds | trials | wall (s) | trials/s | ms per trial | ms run_backtest of one "
        "training window (median of 7) | ms per trial of the TPE sampler alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "A trial is one run_backtest of its 504-session training window (all 500 symbols) and",
        "Optuna's TPE ask/tell; the wall time also holds each fold's two test-window backtests",
        "(best and default parameters) and cutting the windows. The last column runs the same",
        "search (space, seeds, trials per fold) told a random score instead of a backtest: the",
        "sampler's own cost (TPE refits its Parzen estimators on every ask, so it grows with the",
        "trials of a fold and the parameters of the space). The engine dominates; a trial's",
        "backtest re-validates and re-prepares its window's bars (prepare_bars) every time, which",
        "preparing each window once would save. Trials run one after another so a seed gives the same trials; the folds",
        "are independent and could run in parallel processes. Timings on this 2-core VM move with",
        f"other jobs' load. Load average {os.getloadavg()[0]:.2f} at the end.",
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
