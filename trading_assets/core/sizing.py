"""Position sizing: confluence edges, stop, size, targets and portfolio heat (issue 3, section 3).

For one candidate on one session:

- **edges**: how many confluence edges hold (EDGE_NAMES), clamped to 3-10. A NaN input means the
  edge does not hold.
- **entry** = close; **stop** = entry - 2 x ATR(14) (multiple configurable).
- **position value** = min(equity x base_size x edge multiplier, equity x risk_pct / (entry - stop) x entry):
  the smaller of the environment's base size scaled by conviction and the size whose stop-out loses
  exactly risk_pct of equity. **shares** = floor(value / entry); **risk $** = shares x (entry - stop).
- **targets** +10 %, +20 %, +75 % above entry.
- **portfolio heat**, per session: candidates in descending rs_rating order (ties: symbol ascending,
  null rs_rating last) add their risk $. A candidate that would push the total over equity x heat_limit
  is marked ``heat_exceeded`` and sized 0, and does not add to the heat; later, smaller candidates may
  still fit (skip and continue: the literal reading of "any row that would push total heat over").

base_size, risk_pct and heat_limit come from the session's market environment (regime.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from trading_assets.core.frames import reject_duplicate_keys, require_columns

MIN_EDGES, MAX_EDGES = 3, 10

# Conviction multiplier on the environment's base size, by clamped edge count (issue 3, section 3).
EDGE_MULTIPLIERS: Mapping[int, float] = MappingProxyType(
    {3: 0.50, 4: 1.00, 5: 1.10, 6: 1.20, 7: 1.30, 8: 1.35, 9: 1.40, 10: 1.45}
)

EDGE_NAMES: tuple[str, ...] = (
    "edge_above_sma_50",
    "edge_above_sma_200",
    "edge_sma_50_above_sma_200",
    "edge_rs_80",
    "edge_rs_90",
    "edge_near_52w_high",
    "edge_rsi_50_70",
    "edge_macd_above_signal",
    "edge_volume_surge",
    "edge_ema_slope_up",
)

EDGE_INPUT_COLUMNS: tuple[str, ...] = (
    "close",
    "sma_50",
    "sma_200",
    "rs_rating",
    "high_52w_pct",
    "rsi_14",
    "macd",
    "macd_signal",
    "volume",
    "vol_avg_50",
    "ema_slope_20",
)

# Columns plan_positions needs: the candidate, its ATR, the session's environment sizing and edges.
PLAN_INPUT_COLUMNS: tuple[str, ...] = (
    "symbol",
    "date",
    "close",
    "atr_14",
    "rs_rating",
    "edges",
    "environment",
    "base_size",
    "risk_pct",
    "heat_limit",
)

PLAN_COLUMNS: tuple[str, ...] = (
    "entry",
    "stop",
    "edge_multiplier",
    "position_value",
    "shares",
    "cost",
    "risk_dollars",
    "target_1",
    "target_2",
    "target_3",
    "portfolio_heat",
    "heat_exceeded",
    "sizing_status",
)

SIZED, HEAT_EXCEEDED = "sized", "heat_exceeded"

# Float noise in value / entry (e.g. 99.99999999999999 for exactly 100 shares) must not cost a share,
# and a risk $ sum equal to the heat limit up to noise is "not over".
_SHARE_TOLERANCE = 1e-9
_HEAT_TOLERANCE_DOLLARS = 1e-6


def _finite(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class SizingError(ValueError):
    """Inputs that cannot be sized: non-positive or NaN prices, entry <= stop, edges outside 3-10,
    non-positive equity, fractions outside (0, 1], or a malformed candidates frame."""


@dataclass(frozen=True)
class SizingParams:
    """Seed numbers of the sizing rule and of the confluence edges, overridable one by one."""

    equity: float = 100_000.0
    stop_atr_multiple: float = 2.0
    target_1_pct: float = 0.10
    target_2_pct: float = 0.20
    target_3_pct: float = 0.75
    edge_multipliers: Mapping[int, float] = field(default_factory=lambda: dict(EDGE_MULTIPLIERS))
    # Confluence edge thresholds.
    edge_rs_strong: float = 80.0
    edge_rs_elite: float = 90.0
    edge_near_high_pct: float = -0.15  # high_52w_pct is close / 52-week high - 1 (a fraction)
    edge_rsi_low: float = 50.0
    edge_rsi_high: float = 70.0
    edge_volume_surge: float = 1.5
    edge_ema_slope_min: float = 0.0

    def __post_init__(self) -> None:
        if not (_finite(self.equity) and self.equity > 0):
            raise SizingError(f"equity must be a positive amount, got {self.equity!r}")
        if not (_finite(self.stop_atr_multiple) and self.stop_atr_multiple > 0):
            raise SizingError(f"stop_atr_multiple must be positive, got {self.stop_atr_multiple!r}")
        for name in ("target_1_pct", "target_2_pct", "target_3_pct"):
            if not (_finite(getattr(self, name)) and getattr(self, name) > 0):
                raise SizingError(f"{name} must be positive, got {getattr(self, name)!r}")
        keys = sorted(self.edge_multipliers)
        if keys != list(range(MIN_EDGES, MAX_EDGES + 1)):
            raise SizingError(
                f"edge_multipliers must have one entry per edge count {MIN_EDGES}..{MAX_EDGES}, got keys {keys}"
            )
        bad = {k: v for k, v in self.edge_multipliers.items() if not (_finite(v) and v > 0)}
        if bad:
            raise SizingError(f"edge multipliers must be positive, got {bad}")


DEFAULT_SIZING_PARAMS = SizingParams()


@dataclass(frozen=True)
class PositionPlan:
    """The sized trade for one candidate. position_value is the rule's min(); cost = shares x entry."""

    entry: float
    stop: float
    edges: int
    edge_multiplier: float
    position_value: float
    shares: int
    cost: float
    risk_dollars: float
    target_1: float
    target_2: float
    target_3: float


def stop_price(entry: float, atr: float, params: SizingParams = DEFAULT_SIZING_PARAMS) -> float:
    """Initial stop: entry - stop_atr_multiple x ATR(14)."""
    return entry - params.stop_atr_multiple * atr


def size_position(
    entry: float,
    stop: float,
    edges: int,
    equity: float,
    base_size: float,
    risk_pct: float,
    params: SizingParams = DEFAULT_SIZING_PARAMS,
) -> PositionPlan:
    """Size one trade. Raises SizingError (a ValueError) on any invalid input instead of guessing."""
    for name, value in (("entry", entry), ("stop", stop), ("equity", equity)):
        if not (_finite(value) and value > 0):
            raise SizingError(f"{name} must be a positive finite number, got {value!r}")
    if entry <= stop:
        raise SizingError(f"entry {entry!r} must be above stop {stop!r}")
    if isinstance(edges, bool) or not isinstance(edges, int | np.integer):
        raise SizingError(f"edges must be an integer count, got {edges!r}")
    if not MIN_EDGES <= edges <= MAX_EDGES:
        raise SizingError(f"edges must be in {MIN_EDGES}..{MAX_EDGES} (clamp first), got {edges}")
    for name, value in (("base_size", base_size), ("risk_pct", risk_pct)):
        if not (_finite(value) and 0 < value <= 1):
            raise SizingError(f"{name} must be a fraction in (0, 1], got {value!r}")

    multiplier = float(params.edge_multipliers[int(edges)])
    value, shares, cost, risk = _sizing_math(entry, stop, multiplier, equity, base_size, risk_pct)
    return PositionPlan(
        entry=float(entry),
        stop=float(stop),
        edges=int(edges),
        edge_multiplier=multiplier,
        position_value=float(value),
        shares=int(shares),
        cost=float(cost),
        risk_dollars=float(risk),
        target_1=float(entry * (1 + params.target_1_pct)),
        target_2=float(entry * (1 + params.target_2_pct)),
        target_3=float(entry * (1 + params.target_3_pct)),
    )


def _sizing_math(entry, stop, multiplier, equity, base_size, risk_pct):
    """(position value, shares, cost, risk $) for floats or arrays alike, so the scalar and the
    vectorised paths share one formula."""
    risk_per_share = np.subtract(entry, stop)
    by_base = np.multiply(np.multiply(equity, base_size), multiplier)
    by_risk = np.multiply(np.divide(np.multiply(equity, risk_pct), risk_per_share), entry)
    value = np.minimum(by_base, by_risk)
    shares = np.floor(np.divide(value, entry) + _SHARE_TOLERANCE)
    return value, shares, np.multiply(shares, entry), np.multiply(shares, risk_per_share)


def count_edges(frame: pd.DataFrame, params: SizingParams = DEFAULT_SIZING_PARAMS) -> pd.DataFrame:
    """One boolean column per confluence edge (EDGE_NAMES), ``edges_raw`` (0-10) and ``edges``
    (clamped to 3-10), on the frame's index. NaN/null inputs make an edge False."""
    require_columns(frame, EDGE_INPUT_COLUMNS, "edge input", SizingError)
    x = {c: _float(frame[c]) for c in EDGE_INPUT_COLUMNS}
    # Comparisons with NaN are False, which is exactly "edge not satisfied".
    edges = pd.DataFrame(
        {
            "edge_above_sma_50": x["close"] > x["sma_50"],
            "edge_above_sma_200": x["close"] > x["sma_200"],
            "edge_sma_50_above_sma_200": x["sma_50"] > x["sma_200"],
            "edge_rs_80": x["rs_rating"] >= params.edge_rs_strong,
            "edge_rs_90": x["rs_rating"] >= params.edge_rs_elite,
            "edge_near_52w_high": x["high_52w_pct"] >= params.edge_near_high_pct,
            "edge_rsi_50_70": (x["rsi_14"] >= params.edge_rsi_low)
            & (x["rsi_14"] <= params.edge_rsi_high),
            "edge_macd_above_signal": x["macd"] > x["macd_signal"],
            "edge_volume_surge": x["volume"] > params.edge_volume_surge * x["vol_avg_50"],
            "edge_ema_slope_up": x["ema_slope_20"] > params.edge_ema_slope_min,
        },
        index=frame.index,
    )
    edges["edges_raw"] = edges[list(EDGE_NAMES)].sum(axis=1).astype("int64")
    edges["edges"] = edges["edges_raw"].clip(MIN_EDGES, MAX_EDGES).astype("int64")
    return edges


def plan_positions(
    candidates: pd.DataFrame, params: SizingParams = DEFAULT_SIZING_PARAMS
) -> pd.DataFrame:
    """Size every candidate and apply the per-session heat limit.

    ``candidates`` needs PLAN_INPUT_COLUMNS: base_size, risk_pct and heat_limit are the session's
    environment sizing (join compute_market_environment's columns of the same names), edges the
    clamped count from count_edges. Returns the candidates (original order and index) plus
    PLAN_COLUMNS.

    A candidate that cannot be sized never crashes the frame: it keeps NaN/NA sizing and a
    ``sizing_status`` of ``'unsized: <reason>'`` (e.g. ATR missing, environment missing, stop <= 0)
    and takes no heat. ``heat_exceeded`` is True/False for sizable rows and NA for unsized ones.
    ``portfolio_heat`` is the session's accumulated risk $ after the row.
    """
    require_columns(candidates, PLAN_INPUT_COLUMNS, "candidates", SizingError)
    reject_duplicate_keys(candidates, ("symbol", "date"), "candidates", SizingError)

    out = candidates.copy()
    n = len(out)
    entry = _float(out["close"])
    atr = _float(out["atr_14"])
    stop = entry - params.stop_atr_multiple * atr
    base_size, risk_pct, heat_limit = (
        _float(out[c]) for c in ("base_size", "risk_pct", "heat_limit")
    )
    edges = pd.to_numeric(out["edges"], errors="coerce")

    reasons = _unsized_reasons(out, entry, atr, stop, edges, base_size, risk_pct, heat_limit)
    sizable = reasons == ""

    ok = sizable.to_numpy()
    multiplier = edges.map(params.edge_multipliers).astype("float64").where(sizable)
    value, shares, cost, risk = _sizing_math(
        entry.where(sizable).to_numpy(),
        stop.where(sizable).to_numpy(),
        multiplier.to_numpy(),
        params.equity,
        base_size.to_numpy(),
        risk_pct.to_numpy(),
    )
    res: dict[str, Any] = {
        "entry": entry.to_numpy(),
        "stop": stop.to_numpy(),
        "edge_multiplier": multiplier.to_numpy(),
        "position_value": value,
        "shares": shares,
        "cost": cost,
        "risk_dollars": risk,
        "target_1": (entry * (1 + params.target_1_pct)).to_numpy(),
        "target_2": (entry * (1 + params.target_2_pct)).to_numpy(),
        "target_3": (entry * (1 + params.target_3_pct)).to_numpy(),
    }

    # Heat is allocated in rs_rating order within each session; a sequential scan, since whether
    # a row fits depends on which earlier rows did.
    order = (
        pd.DataFrame(
            {
                "date": out["date"].to_numpy(),
                "rs": _float(out["rs_rating"]).to_numpy(),
                "symbol": out["symbol"].astype(str).to_numpy(),
            }
        )
        .sort_values(
            ["date", "rs", "symbol"],
            ascending=[True, False, True],
            na_position="last",
            kind="stable",
        )
        .index.to_numpy()
    )
    session = pd.factorize(out["date"])[0]
    limits = params.equity * heat_limit.to_numpy()
    heat_exceeded = np.zeros(n, dtype=bool)
    heat_after = np.full(n, np.nan)
    heat, current = 0.0, -2
    for i in order:
        if session[i] != current:
            current, heat = session[i], 0.0
        if not ok[i]:
            continue
        if heat + risk[i] > limits[i] + _HEAT_TOLERANCE_DOLLARS:
            heat_exceeded[i] = True
        else:
            heat += risk[i]
        heat_after[i] = heat
    for name in ("position_value", "shares", "cost", "risk_dollars"):
        res[name][heat_exceeded] = 0.0

    for name in PLAN_COLUMNS[:-3]:
        out[name] = res[name]
    out["shares"] = pd.array(res["shares"], dtype="Float64").astype("Int64")
    out["portfolio_heat"] = heat_after
    out["heat_exceeded"] = pd.array(heat_exceeded, dtype="boolean")
    out.loc[~sizable, "heat_exceeded"] = pd.NA
    status = np.where(heat_exceeded, HEAT_EXCEEDED, SIZED).astype(object)
    status[~ok] = ("unsized: " + reasons[~sizable]).to_numpy()
    out["sizing_status"] = status
    return out


def _unsized_reasons(
    out: pd.DataFrame,
    entry: pd.Series,
    atr: pd.Series,
    stop: pd.Series,
    edges: pd.Series,
    base_size: pd.Series,
    risk_pct: pd.Series,
    heat_limit: pd.Series,
) -> pd.Series:
    """Why each row cannot be sized ('' when it can), checked in this order, first reason wins."""
    env = out["environment"]
    checks = [
        (env.isna() | ~env.isin(["A", "B", "C", "D"]), "environment missing"),
        (~np.isfinite(entry) | (entry <= 0), "close missing or not positive"),
        (~np.isfinite(atr) | (atr <= 0), "atr_14 missing or not positive"),
        (~(stop > 0), "stop not positive"),
        (
            edges.isna() | (edges < MIN_EDGES) | (edges > MAX_EDGES) | (edges % 1 != 0),
            "edges not in 3-10",
        ),
        (~((base_size > 0) & (base_size <= 1)), "base_size missing"),
        (~((risk_pct > 0) & (risk_pct <= 1)), "risk_pct missing"),
        (~((heat_limit > 0) & (heat_limit <= 1)), "heat_limit missing"),
    ]
    reasons = pd.Series("", index=out.index, dtype=object)
    for mask, reason in reversed(checks):
        reasons = reasons.mask(pd.Series(np.asarray(mask, dtype=bool), index=out.index), reason)
    return reasons


def _float(series: pd.Series) -> pd.Series:
    """Numeric float64 view: nullable Int64/boolean NA and non-numbers become NaN."""
    return pd.to_numeric(series, errors="coerce").astype("float64")
