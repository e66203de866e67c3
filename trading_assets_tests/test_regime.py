"""Market environment A/B/C/D: every rule boundary, breadth, missing inputs and warm-up, by hand."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trading_assets
from trading_assets.core.regime import (
    DEFAULT_ENVIRONMENT_PARAMS,
    ENVIRONMENT_COLUMNS,
    EnvironmentInputError,
    EnvironmentParams,
    classify_environments,
    compute_market_environment,
    environment_report_markdown,
    missing_benchmark_sessions,
)

DAY = dt.date(2025, 7, 23)
SAMPLE_PRICES = Path(trading_assets.__file__).parent / "sources/data/sample_prices.parquet"

# A session where every condition of A holds, with room to spare.
STRONG = {
    "spy_close": 110.0,
    "spy_sma_50": 100.0,
    "spy_sma_200": 90.0,
    "qqq_close": 55.0,
    "qqq_sma_50": 50.0,
    "qqq_sma_200": 45.0,
    "breadth_pct": 80.0,
    "vix_close": 15.0,
}


def bench_rows(day, spy=(110.0, 100.0, 90.0), qqq=(55.0, 50.0, 45.0), vix=15.0):
    rows = []
    for sym, (close, s50, s200) in (("SPY", spy), ("QQQ", qqq)):
        rows.append({"symbol": sym, "date": day, "close": close, "sma_50": s50, "sma_200": s200})
    if vix is not None:
        rows.append(
            {"symbol": "^VIX", "date": day, "close": vix, "sma_50": np.nan, "sma_200": np.nan}
        )
    return rows


def stock_rows(day, above: int, below: int, no_sma: int = 0):
    """above: close 11 > sma_50 10; below: close 9 < 10; no_sma: close 12 with sma_50 NaN."""
    rows = []
    for i in range(above):
        rows.append(
            {"symbol": f"UP{i}", "date": day, "close": 11.0, "sma_50": 10.0, "sma_200": 8.0}
        )
    for i in range(below):
        rows.append({"symbol": f"DN{i}", "date": day, "close": 9.0, "sma_50": 10.0, "sma_200": 8.0})
    for i in range(no_sma):
        rows.append(
            {"symbol": f"NEW{i}", "date": day, "close": 12.0, "sma_50": np.nan, "sma_200": np.nan}
        )
    return rows


def one_session(above=8, below=2, no_sma=0, **bench) -> pd.DataFrame:
    return pd.DataFrame(bench_rows(DAY, **bench) + stock_rows(DAY, above, below, no_sma))


def history(n: int, **bench) -> pd.DataFrame:
    """n consecutive sessions of the same benchmark values and 8/10 stocks above their SMA 50."""
    days = [DAY - dt.timedelta(days=n - i) for i in range(n)]
    return pd.DataFrame([r for d in days for r in bench_rows(d, **bench) + stock_rows(d, 8, 2)])


def env_of(params: EnvironmentParams = DEFAULT_ENVIRONMENT_PARAMS, **overrides) -> str | None:
    """classify_environments on one session: STRONG with ``overrides``."""
    return classify_environments(pd.DataFrame([{**STRONG, **overrides}]), params).iloc[0]


# --- the rule, one boundary at a time (classify_environments on one session) ---------------------


def test_strong_session_is_a():
    assert env_of() == "A"


BOUNDARIES = [  # (overrides of STRONG, environment)
    ({"breadth_pct": 70.0}, "A"),  # breadth >= 70 is inclusive
    ({"breadth_pct": 69.99}, "B"),
    ({"vix_close": 25.0}, "A"),  # VIX <= 25 is inclusive
    ({"vix_close": 25.01}, "B"),
    ({"spy_sma_200": 110.0}, "B"),  # SPY equal to its SMA 200 is not above it (strict)
    ({"qqq_close": 45.0, "qqq_sma_50": 44.0}, "B"),  # QQQ on its SMA 200
    ({"spy_sma_200": 111.0}, "B"),  # SPY below its SMA 200 but above its SMA 50
    ({"breadth_pct": 50.0}, "B"),  # B's breadth bound inclusive
    ({"breadth_pct": 49.99}, "C"),
    ({"breadth_pct": 60.0, "vix_close": 30.0}, "B"),  # B's VIX bound inclusive
    ({"breadth_pct": 60.0, "vix_close": 30.01}, "C"),
    ({"spy_close": 100.0}, "C"),  # SPY equal to its SMA 50: neither A nor B
    ({"qqq_close": 49.0}, "C"),  # QQQ below its SMA 50
    ({"breadth_pct": 30.0}, "C"),  # C's breadth bound inclusive
    ({"breadth_pct": 29.99}, "D"),
    ({"vix_close": 35.0}, "C"),  # C's VIX bound inclusive
    ({"vix_close": 35.01}, "D"),
    ({"breadth_pct": 0.0, "vix_close": 80.0}, "D"),
    ({"spy_close": 10.0, "breadth_pct": 31.0, "vix_close": 34.0}, "C"),  # C ignores the SMAs
]


@pytest.mark.parametrize(("overrides", "expected"), BOUNDARIES)
def test_rule_boundaries(overrides, expected):
    assert env_of(**overrides) == expected


def test_sessions_are_classified_independently():
    # Every boundary case as one frame, on a non-default index: the same answers, row by row.
    frame = pd.DataFrame([{**STRONG, **overrides} for overrides, _ in BOUNDARIES])
    frame.index = frame.index * 10 + 3
    envs = classify_environments(frame)
    assert list(envs.index) == list(frame.index)
    assert envs.tolist() == [expected for _, expected in BOUNDARIES]


def test_first_rule_that_holds_wins():
    # A's conditions imply B's and C's: the order, not the last match, decides.
    assert env_of(breadth_pct=100.0, vix_close=0.0) == "A"


@pytest.mark.parametrize("field", ["spy_close", "qqq_close", "vix_close"])
def test_nan_input_is_unclassified_not_d(field):
    # Breadth 10% is D whatever else holds; an unknown input must still not be classified.
    assert env_of(breadth_pct=10.0) == "D"
    assert env_of(breadth_pct=10.0, **{field: math.nan}) is None
    assert env_of(breadth_pct=math.nan) is None


def test_nan_sma_counts_as_not_above():
    # The caller (compute_market_environment) has decided that this SMA is still warming up.
    assert env_of(spy_sma_200=math.nan) == "B"
    assert env_of(qqq_sma_50=math.nan) == "C"


def test_params_override_thresholds():
    strict = EnvironmentParams(a_breadth_min=85.0, c_vix_max=20.0)
    assert env_of(params=strict) == "B"  # breadth 80 no longer enough for A
    assert env_of(breadth_pct=40.0, vix_close=22.0, params=strict) == "D"  # VIX 22 > new C cap
    assert env_of(breadth_pct=40.0, vix_close=22.0) == "C"


@pytest.mark.parametrize(
    "bad",
    [{"a_breadth_min": 120.0}, {"b_vix_max": -1.0}, {"c_base_size": 0.0}, {"d_heat_limit": 1.5},
     {"a_risk_pct": math.nan}],
)  # fmt: skip
def test_params_reject_nonsense(bad):
    with pytest.raises(ValueError):
        EnvironmentParams(**bad)


def test_sizing_table_defaults():
    p = DEFAULT_ENVIRONMENT_PARAMS
    assert tuple(p.sizing("A")) == (0.10, 0.005, 0.025)
    assert tuple(p.sizing("B")) == (0.08, 0.004, 0.020)
    assert tuple(p.sizing("C")) == (0.05, 0.0025, 0.010)
    assert tuple(p.sizing("D")) == (0.03, 0.002, 0.015)
    with pytest.raises(ValueError, match="unknown environment"):
        p.sizing("E")


# --- the frame: breadth, sessions, sizing columns -------------------------------------------------


def test_frame_columns_and_sizing():
    env = compute_market_environment(one_session())
    assert list(env.columns) == list(ENVIRONMENT_COLUMNS)
    row = env.iloc[0]
    assert row["date"] == DAY
    assert (row["spy_close"], row["spy_sma_50"], row["spy_sma_200"]) == (110.0, 100.0, 90.0)
    assert (row["qqq_close"], row["qqq_sma_50"], row["qqq_sma_200"]) == (55.0, 50.0, 45.0)
    assert row["vix_close"] == 15.0
    assert row["breadth_pct"] == 80.0
    assert row["environment"] == "A"
    assert (row["base_size"], row["risk_pct"], row["heat_limit"]) == (0.10, 0.005, 0.025)
    assert row["missing_inputs"] == ""


@pytest.mark.parametrize(
    ("above", "below", "breadth", "expected"),
    [(7, 3, 70.0, "A"), (69, 31, 69.0, "B"), (1, 1, 50.0, "B"), (49, 51, 49.0, "C"),
     (3, 7, 30.0, "C"), (29, 71, 29.0, "D")],
)  # fmt: skip
def test_breadth_boundaries_from_counts(above, below, breadth, expected):
    env = compute_market_environment(one_session(above=above, below=below)).iloc[0]
    assert env["breadth_pct"] == breadth
    assert env["environment"] == expected


def test_breadth_excludes_stocks_without_sma_50_and_benchmarks():
    # 7 above, 3 below, 5 brand-new listings with no SMA 50 (they would be "above" if counted),
    # and SPY/QQQ both above their SMA 50: breadth is 7/10, not 12/15 or 9/12.
    env = compute_market_environment(one_session(above=7, below=3, no_sma=5)).iloc[0]
    assert env["breadth_pct"] == 70.0
    frame = one_session(above=7, below=3)
    frame.loc[frame["symbol"] == "UP0", "close"] = np.nan  # no close: not eligible either
    assert compute_market_environment(frame).iloc[0]["breadth_pct"] == pytest.approx(600 / 9)


def test_no_eligible_stock_is_unclassified_but_not_a_benchmark_failure():
    env = compute_market_environment(one_session(above=0, below=0, no_sma=4))
    row = env.iloc[0]
    assert math.isnan(row["breadth_pct"])
    assert row["environment"] is None
    assert row["missing_inputs"] == "breadth"
    assert missing_benchmark_sessions(env).empty


def test_missing_vix_row_is_null_not_d():
    # Breadth 20% would be D whatever the VIX is; a missing VIX must still not be classified.
    env = compute_market_environment(one_session(above=2, below=8, vix=None))
    row = env.iloc[0]
    assert row["environment"] is None
    assert math.isnan(row["base_size"]) and math.isnan(row["heat_limit"])
    assert row["missing_inputs"] == "^VIX close"
    gaps = missing_benchmark_sessions(env)
    assert gaps.to_dict("records") == [{"date": DAY, "missing_inputs": "^VIX close"}]


def test_nan_closes_and_missing_qqq_row_are_reported():
    frame = one_session(vix=np.nan)
    frame.loc[frame["symbol"] == "SPY", "close"] = np.nan
    frame = frame[frame["symbol"] != "QQQ"]
    row = compute_market_environment(frame).iloc[0]
    assert row["environment"] is None
    assert row["missing_inputs"] == "SPY close; QQQ close; ^VIX close"


def test_sma_warmup_cannot_be_a_but_is_classified():
    # 60 sessions: SMA 50 exists, SMA 200 cannot yet (fewer than 200 closes) -> B, flagged as warm-up.
    frame = history(60, spy=(110.0, 100.0, np.nan), qqq=(55.0, 50.0, np.nan))
    env = compute_market_environment(frame)
    assert (env["environment"] == "B").all()
    assert (env["missing_inputs"] == "").all()
    assert (env["warmup_inputs"] == "SPY sma_200; QQQ sma_200").all()
    assert missing_benchmark_sessions(env).empty


def test_sma_missing_after_warmup_is_a_failure():
    frame = history(60)
    last = frame["date"].max()
    hole = (frame["symbol"] == "QQQ") & (frame["date"] == last)
    frame.loc[hole, "sma_50"] = np.nan  # QQQ has 60 closes: its SMA 50 must exist
    env = compute_market_environment(frame)
    assert env.iloc[-1]["environment"] is None
    assert env.iloc[-1]["missing_inputs"] == "QQQ sma_50"
    assert (env.iloc[:-1]["environment"] == "A").all()
    assert missing_benchmark_sessions(env)["date"].tolist() == [last]


def test_vix_only_dates_are_not_sessions():
    frame = one_session()
    cboe_only = {"symbol": "^VIX", "date": DAY + dt.timedelta(days=1), "close": 14.0}
    frame = pd.concat([frame, pd.DataFrame([cboe_only])], ignore_index=True)
    env = compute_market_environment(frame)
    assert env["date"].tolist() == [DAY]


def test_params_override_changes_environment_and_sizing():
    params = EnvironmentParams(a_breadth_min=90.0, b_base_size=0.07, b_risk_pct=0.003)
    row = compute_market_environment(one_session(), params).iloc[0]
    assert row["environment"] == "B"
    assert (row["base_size"], row["risk_pct"], row["heat_limit"]) == (0.07, 0.003, 0.020)


def test_empty_frame_gives_empty_environment():
    empty = pd.DataFrame(columns=["symbol", "date", "close", "sma_50", "sma_200"])
    env = compute_market_environment(empty)
    assert env.empty and list(env.columns) == list(ENVIRONMENT_COLUMNS)
    assert missing_benchmark_sessions(env).empty


def test_duplicated_rows_and_missing_columns_are_rejected():
    frame = one_session()
    with pytest.raises(EnvironmentInputError, match="duplicated"):
        compute_market_environment(pd.concat([frame, frame.iloc[[0]]]))
    with pytest.raises(EnvironmentInputError, match="sma_200"):
        compute_market_environment(frame.drop(columns=["sma_200"]))
    with pytest.raises(EnvironmentInputError, match="DataFrame"):
        compute_market_environment([1, 2, 3])
    with pytest.raises(EnvironmentInputError, match="missing_inputs"):
        missing_benchmark_sessions(pd.DataFrame({"date": [DAY]}))


# --- report -------------------------------------------------------------------------------------


def test_report_markdown_for_each_environment():
    env = compute_market_environment(one_session()).iloc[0]
    md = environment_report_markdown(env)
    assert "## Market environment 2025-07-23: **A**" in md
    assert "| SPY | 110.00 | 100.00 (above, +10.0%) | 90.00 (above, +22.2%) |" in md
    assert "Breadth: 80.0%" in md and "VIX: 15.00" in md
    assert "Aggressive: 3-5 new trades a week" in md
    assert "Base size 10% of equity, risk 0.5% per trade, heat limit 2.5%" in md
    expectations = {
        "B": ({"above": 6, "below": 4}, "Normal: 2-3 new trades a week"),
        "C": ({"above": 4, "below": 6}, "Defensive: at most 1 new trade a week"),
        "D": ({"above": 1, "below": 9}, "Avoid new trades"),
    }
    for letter, (counts, advice) in expectations.items():
        row = compute_market_environment(one_session(**counts)).iloc[0]
        assert row["environment"] == letter
        assert advice in environment_report_markdown(row)


def test_report_markdown_when_unclassified():
    row = compute_market_environment(one_session(vix=None)).iloc[0]
    md = environment_report_markdown(row)
    assert "**unclassified**" in md
    assert "No recommendation" in md and "^VIX close" in md
    assert "VIX: n/a" in md


# --- real prices: the vectorised frame against a literal per-session reading ---------------------


def _literal_environment(r) -> str | None:
    """The rule as written in the issue, one if at a time (an independent reference)."""
    vals = [r.spy_close, r.qqq_close, r.breadth_pct, r.vix_close]
    if any(pd.isna(v) for v in vals):
        return None
    spy50, qqq50 = r.spy_close > r.spy_sma_50, r.qqq_close > r.qqq_sma_50
    spy200, qqq200 = r.spy_close > r.spy_sma_200, r.qqq_close > r.qqq_sma_200
    if spy50 and qqq50 and spy200 and qqq200 and r.breadth_pct >= 70 and r.vix_close <= 25:
        return "A"
    if spy50 and qqq50 and r.breadth_pct >= 50 and r.vix_close <= 30:
        return "B"
    if r.breadth_pct >= 30 and r.vix_close <= 35:
        return "C"
    return "D"


def test_sample_prices_match_literal_rule_and_loop_breadth():
    prices = pd.read_parquet(SAMPLE_PRICES, columns=["symbol", "date", "close"])
    by_symbol = prices.groupby("symbol")["close"]
    prices["sma_50"] = by_symbol.transform(lambda s: s.rolling(50).mean())
    prices["sma_200"] = by_symbol.transform(lambda s: s.rolling(200).mean())
    env = compute_market_environment(prices)

    sessions = sorted(prices.loc[prices["symbol"] != "^VIX", "date"].unique())
    assert env["date"].tolist() == sessions
    # Breadth by a plain loop over one date in every 50.
    stocks = prices[~prices["symbol"].isin(["SPY", "QQQ", "^VIX"])]
    for day in sessions[60::50]:
        today = stocks[stocks["date"] == day]
        eligible = [(c, s) for c, s in zip(today["close"], today["sma_50"], strict=True) if s == s]
        expected = 100.0 * sum(c > s for c, s in eligible) / len(eligible)
        got = env.loc[env["date"] == day, "breadth_pct"].item()
        assert got == pytest.approx(expected, abs=1e-12)

    literal = [_literal_environment(r) for r in env.itertuples()]
    assert env["environment"].tolist() == literal
    # All four environments occur between 2019 and 2025 (COVID crash: D).
    assert set(env["environment"].dropna()) == {"A", "B", "C", "D"}
    assert env.loc[env["date"] == dt.date(2020, 3, 16), "environment"].item() == "D"
    # Only the first 49 sessions lack breadth (no stock has 50 closes yet); no benchmark gap.
    assert env["environment"].isna().sum() == 49
    assert missing_benchmark_sessions(env).empty
