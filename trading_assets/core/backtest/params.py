"""The parameters of the four strategies: named constants, overridable by name through ``params``.

``resolve_params(strategy, params)`` returns the strategy's frozen parameter set with the
overrides applied; an unknown name or a bad value is a BacktestInputError naming it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from trading_assets.core.backtest.result import BacktestInputError

# --- ma_crossover ---------------------------------------------------------------------------------
# Long when the fast average crosses above the slow one at a close; exit when it crosses below.
MA_FAST_AVERAGE = "sma_20"
MA_SLOW_AVERAGE = "sma_50"
# The averages compute_indicators provides that the crossover may use instead.
MOVING_AVERAGE_COLUMNS: tuple[str, ...] = ("sma_20", "sma_50", "sma_200", "ema_12", "ema_26")

# --- rsi_mean_reversion ---------------------------------------------------------------------------
RSI_ENTRY_BELOW = 30.0  # long when rsi_14 < this at a close
RSI_EXIT_ABOVE = 70.0  # exit when rsi_14 > this at a close

# --- stdev (the STDEV tactic) ---------------------------------------------------------------------
MR_ARM_Z = 1.2  # mean reversion arms at |zscore_20| >= this
MR_TRIGGER_Z = 0.6  # ... and triggers when |z| comes back to <= this
TC_ARM_Z = 1.8  # trend continuation arms at |z| >= this in ema_slope_20's direction
TC_TRIGGER_Z = 0.6  # ... and triggers on the pull-back to |z| <= this, slope keeping its sign
ATR_PERCENTILE_CAP = 85.0  # no entry when atr_pct_rank_252 > this
ATR_MULTIPLIER_SL = 1.4  # stop at entry -/+ this x atr_14 of the signal session
MIN_RR_RATIO = 1.5  # target at this x the risk
MAX_RISK_PER_TRADE = 0.01  # risk per trade as a fraction of the sleeve's equity

# --- watchlist_momentum ---------------------------------------------------------------------------
TARGET_1_PCT = 0.10  # sell the first third at +10 % over the entry fill
TARGET_2_PCT = 0.20  # ... and the second at +20 %


@dataclass(frozen=True)
class MaCrossoverParams:
    fast_average: str = MA_FAST_AVERAGE
    slow_average: str = MA_SLOW_AVERAGE


@dataclass(frozen=True)
class RsiMeanReversionParams:
    rsi_entry_below: float = RSI_ENTRY_BELOW
    rsi_exit_above: float = RSI_EXIT_ABOVE


@dataclass(frozen=True)
class StdevParams:
    mr_arm_z: float = MR_ARM_Z
    mr_trigger_z: float = MR_TRIGGER_Z
    tc_arm_z: float = TC_ARM_Z
    tc_trigger_z: float = TC_TRIGGER_Z
    atr_percentile_cap: float = ATR_PERCENTILE_CAP
    atr_multiplier_sl: float = ATR_MULTIPLIER_SL
    min_rr_ratio: float = MIN_RR_RATIO
    max_risk_per_trade: float = MAX_RISK_PER_TRADE


@dataclass(frozen=True)
class MomentumParams:
    target_1_pct: float = TARGET_1_PCT
    target_2_pct: float = TARGET_2_PCT


SLEEVE_PARAMS: dict[str, type] = {
    "ma_crossover": MaCrossoverParams,
    "rsi_mean_reversion": RsiMeanReversionParams,
    "stdev": StdevParams,
}
STRATEGY_PARAMS: dict[str, type] = {**SLEEVE_PARAMS, "watchlist_momentum": MomentumParams}

# (low, high, low inclusive, high inclusive) of each numeric parameter.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "rsi_entry_below": (0.0, 100.0, False, False),
    "rsi_exit_above": (0.0, 100.0, False, False),
    "mr_arm_z": (0.0, math.inf, False, False),
    "mr_trigger_z": (0.0, math.inf, True, False),
    "tc_arm_z": (0.0, math.inf, False, False),
    "tc_trigger_z": (0.0, math.inf, True, False),
    "atr_percentile_cap": (0.0, 100.0, True, True),
    "atr_multiplier_sl": (0.0, math.inf, False, False),
    "min_rr_ratio": (0.0, math.inf, False, False),
    "max_risk_per_trade": (0.0, 1.0, False, True),
    "target_1_pct": (0.0, math.inf, False, False),
    "target_2_pct": (0.0, math.inf, False, False),
}


def resolve_params(strategy: str, params: Mapping[str, Any] | None) -> Any:
    """The strategy's parameter set with ``params`` applied by name."""
    cls = STRATEGY_PARAMS[strategy]
    if params is None:
        return cls()
    if not isinstance(params, Mapping):
        raise BacktestInputError(f"params must be a dict, got {type(params).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise BacktestInputError(
            f"unknown parameter(s) {unknown} for strategy {strategy!r}; it takes {known}"
        )
    overrides = {name: _checked(strategy, name, value) for name, value in params.items()}
    resolved = replace(cls(), **overrides)
    _check_together(strategy, resolved)
    return resolved


def _checked(strategy: str, name: str, value: Any) -> Any:
    if name in ("fast_average", "slow_average"):
        if value not in MOVING_AVERAGE_COLUMNS:
            raise BacktestInputError(
                f"{strategy} parameter {name}={value!r} must be one of {list(MOVING_AVERAGE_COLUMNS)}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise BacktestInputError(f"{strategy} parameter {name}={value!r} must be a finite number")
    low, high, low_in, high_in = _RANGES[name]
    if (value < low or (value == low and not low_in)) or (
        value > high or (value == high and not high_in)
    ):
        interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
        raise BacktestInputError(f"{strategy} parameter {name}={value!r} must lie in {interval}")
    return float(value)


def _check_together(strategy: str, p: Any) -> None:
    if isinstance(p, MaCrossoverParams) and p.fast_average == p.slow_average:
        raise BacktestInputError(
            f"{strategy}: fast_average and slow_average are both {p.fast_average!r}"
        )
    if isinstance(p, MomentumParams) and p.target_1_pct >= p.target_2_pct:
        raise BacktestInputError(
            f"{strategy}: target_1_pct={p.target_1_pct:g} must be below "
            f"target_2_pct={p.target_2_pct:g}"
        )
    if isinstance(p, RsiMeanReversionParams) and p.rsi_entry_below >= p.rsi_exit_above:
        raise BacktestInputError(
            f"{strategy}: rsi_entry_below={p.rsi_entry_below:g} must be below "
            f"rsi_exit_above={p.rsi_exit_above:g}"
        )
