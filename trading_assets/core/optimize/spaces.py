"""Each strategy's search space: the named parameters of params.py the optimizer may move, and where.

A space maps a parameter name to a FloatRange (low..high on a grid of ``step``) or a Choice (a
few values). The grids keep trials readable and make a repeated suggestion a repeated backtest,
not a new one a hair away. The ranges are chosen so every point of a space passes params.py's
validation on its own and together (fast != slow average, rsi entry below exit, target 1 below
target 2, an arming |z| above its trigger): the fast and slow averages come from disjoint lists of
the indicator columns that exist, and paired thresholds from disjoint intervals.
``check_space`` proves it on every corner of the space with resolve_params itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trading_assets.core.backtest.params import MOVING_AVERAGE_COLUMNS, resolve_params
from trading_assets.core.backtest.result import STRATEGIES, BacktestInputError


class OptimizerConfigError(ValueError):
    """A search space, walk-forward window, trial count or objective the optimizer cannot use."""


@dataclass(frozen=True)
class FloatRange:
    """low, low + step, ..., high (both ends included)."""

    low: float
    high: float
    step: float

    @property
    def corners(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    @property
    def corners(self) -> tuple[Any, ...]:
        return self.values


Space = Mapping[str, FloatRange | Choice]

# The crossover's fast average is one of the shorter columns, the slow one of the longer ones.
FAST_AVERAGES: tuple[str, ...] = ("ema_12", "sma_20", "ema_26")
SLOW_AVERAGES: tuple[str, ...] = ("sma_50", "sma_200")

SEARCH_SPACES: dict[str, Space] = {
    "ma_crossover": {
        "fast_average": Choice(FAST_AVERAGES),
        "slow_average": Choice(SLOW_AVERAGES),
    },
    "rsi_mean_reversion": {
        "rsi_entry_below": FloatRange(10.0, 45.0, 1.0),
        "rsi_exit_above": FloatRange(55.0, 90.0, 1.0),
    },
    "stdev": {
        "mr_arm_z": FloatRange(0.8, 2.5, 0.1),
        "mr_trigger_z": FloatRange(0.0, 0.7, 0.1),
        "tc_arm_z": FloatRange(1.2, 3.0, 0.1),
        "tc_trigger_z": FloatRange(0.0, 1.0, 0.1),
        "atr_multiplier_sl": FloatRange(0.8, 3.0, 0.1),
        "min_rr_ratio": FloatRange(1.0, 3.0, 0.1),
    },
    "watchlist_momentum": {
        "target_1_pct": FloatRange(0.05, 0.15, 0.01),
        "target_2_pct": FloatRange(0.16, 0.40, 0.01),
    },
}
assert set(FAST_AVERAGES + SLOW_AVERAGES) <= set(MOVING_AVERAGE_COLUMNS)


def space_for(strategy: str, spaces: Mapping[str, Space] | None = None) -> Space:
    """The checked space of ``strategy`` (from ``spaces``, default SEARCH_SPACES)."""
    spaces = SEARCH_SPACES if spaces is None else spaces
    if strategy not in STRATEGIES:
        raise OptimizerConfigError(
            f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}"
        )
    if strategy not in spaces:
        raise OptimizerConfigError(
            f"no search space declared for strategy {strategy!r}; spaces exist for "
            f"{sorted(spaces)} (trading_assets/core/optimize/spaces.py)"
        )
    space = spaces[strategy]
    check_space(strategy, space)
    return space


def check_space(strategy: str, space: Space) -> None:
    """Raise OptimizerConfigError unless each dimension is well formed and every corner of the
    space (each range's ends crossed with every choice) is a parameter set params.py accepts."""
    if not isinstance(space, Mapping) or not space:
        raise OptimizerConfigError(f"{strategy}: the search space is empty")
    for name, dim in space.items():
        if isinstance(dim, FloatRange):
            _check_range(strategy, name, dim)
        elif isinstance(dim, Choice):
            if not dim.values or len(set(dim.values)) != len(dim.values):
                raise OptimizerConfigError(
                    f"{strategy} parameter {name}: a Choice needs distinct values, got {dim.values!r}"
                )
        else:
            raise OptimizerConfigError(
                f"{strategy} parameter {name}: expected a FloatRange or a Choice, got {dim!r}"
            )
    names = list(space)
    for corner in itertools.product(*(space[n].corners for n in names)):
        params = dict(zip(names, corner, strict=True))
        try:
            resolve_params(strategy, params)
        except BacktestInputError as exc:
            raise OptimizerConfigError(
                f"{strategy}: the search space holds {params}, which the engine refuses: {exc}"
            ) from exc


def _check_range(strategy: str, name: str, dim: FloatRange) -> None:
    values = (dim.low, dim.high, dim.step)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise OptimizerConfigError(f"{strategy} parameter {name}: {dim!r} needs finite numbers")
    if not dim.low < dim.high or dim.step <= 0:
        raise OptimizerConfigError(
            f"{strategy} parameter {name}: {dim!r} needs low < high and step > 0"
        )
    steps = (dim.high - dim.low) / dim.step
    if abs(steps - round(steps)) > 1e-9:
        raise OptimizerConfigError(
            f"{strategy} parameter {name}: high - low = {dim.high - dim.low:g} is not a whole "
            f"number of steps of {dim.step:g}"
        )


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """An Optuna trial's point in ``space``, floats rounded to the grid (no 0.30000000000000004)."""
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            params[name] = trial.suggest_categorical(name, list(dim.values))
        else:
            value = trial.suggest_float(name, dim.low, dim.high, step=dim.step)
            params[name] = round(value, 10)
    return params
