"""The walk-forward strategy optimizer: ``optimize_strategy(bars, strategy, config)``.

- spaces.py: each strategy's search space over its named parameters (params.py), checked against
  the engine's own validation;
- folds.py: the walk-forward folds (train on a window, test on the next unseen one, roll on);
- search.py: the Optuna TPE search per fold, the in-sample vs out-of-sample metrics.
"""

from trading_assets.core.optimize.folds import Fold, WalkForward, walk_forward
from trading_assets.core.optimize.search import (
    FOLD_COLUMNS,
    OBJECTIVES,
    TRIAL_COLUMNS,
    OptimizationResult,
    WalkForwardConfig,
    optimize_strategy,
)
from trading_assets.core.optimize.spaces import (
    SEARCH_SPACES,
    Choice,
    FloatRange,
    OptimizerConfigError,
    check_space,
    space_for,
)

__all__ = [
    "FOLD_COLUMNS",
    "OBJECTIVES",
    "SEARCH_SPACES",
    "TRIAL_COLUMNS",
    "Choice",
    "FloatRange",
    "Fold",
    "OptimizationResult",
    "OptimizerConfigError",
    "WalkForward",
    "WalkForwardConfig",
    "check_space",
    "optimize_strategy",
    "space_for",
    "walk_forward",
]
