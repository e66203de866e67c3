"""Watchlist screen: each criterion's pass/fail/unknown boundary, the market-cap choice, the sized output."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trading_assets
from trading_assets.core.fundamentals import read_fundamentals_snapshots
from trading_assets.core.regime import DEFAULT_ENVIRONMENT_PARAMS
from trading_assets.core.screen import (
    CRITERIA,
    DEFAULT_SCREEN_PARAMS,
    FAIL,
    PASS,
    UNKNOWN,
    WATCHLIST_COLUMNS,
    ScreenInputError,
    ScreenParams,
    evaluate_criteria,
    screen_watchlist,
)
from trading_assets.core.sizing import SizingParams

DAY = dt.date(2025, 7, 23)
NEXT_DAY = dt.date(2025, 7, 24)
FUNDAMENTALS = Path(trading_assets.__file__).parent / "sources/data/fundamentals_2025-02-01.csv"
SNAPSHOT_DAY = dt.date(2025, 2, 1)  # the bundled snapshot's as_of, before DAY

# A stock passing every criterion; 7 confluence edges hold (not rs >= 90, volume surge, slope).
GOOD = {
    "close": 100.0,
    "high": 101.0,
    "low": 99.0,
    "volume": 1_000_000.0,
    "sma_50": 95.0,
    "sma_200": 90.0,
    "rs_rating": 85,
    "vol_avg_50": 1_000_000.0,
    "atr_14": 2.0,
    "high_52w_pct": -0.05,
    "rsi_14": 60.0,
    "macd": 1.0,
    "macd_signal": 0.5,
    "ema_slope_20": -0.1,
}


def stock(symbol, date=DAY, **overrides):
    return {"symbol": symbol, "date": date, **GOOD, **overrides}


def indicators(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    frame["rs_rating"] = frame["rs_rating"].astype("Int64")
    return frame


def fundamentals(as_of=SNAPSHOT_DAY, **caps) -> pd.DataFrame:
    return pd.DataFrame({"symbol": list(caps), "market_cap": list(caps.values()), "as_of": as_of})


def environment(*days_envs) -> pd.DataFrame:
    rows = []
    for day, env in days_envs:
        size = DEFAULT_ENVIRONMENT_PARAMS.sizing(env) if env else (np.nan, np.nan, np.nan)
        rows.append(
            {
                "date": day,
                "environment": env,
                **dict(zip(("base_size", "risk_pct", "heat_limit"), size, strict=True)),
            }
        )
    return pd.DataFrame(rows)


def criteria_of(row_overrides, caps=None, params=DEFAULT_SCREEN_PARAMS) -> pd.Series:
    caps = {"XYZ": 5e9} if caps is None else caps
    return evaluate_criteria(
        indicators(stock("XYZ", **row_overrides)), fundamentals(**caps), params
    ).iloc[0]


# --- criteria --------------------------------------------------------------------------------------


def test_good_stock_passes_every_criterion():
    row = criteria_of({})
    assert [row[c] for c in CRITERIA] == [PASS] * 5
    assert row["criteria_passed"] == 5
    assert row["passes_screen"]


@pytest.mark.parametrize(
    ("overrides", "criterion", "status"),
    [
        ({"rs_rating": 80}, "crit_rs_rating", PASS),  # >= 80 inclusive
        ({"rs_rating": 79}, "crit_rs_rating", FAIL),
        ({"rs_rating": pd.NA}, "crit_rs_rating", UNKNOWN),
        ({"vol_avg_50": 500_000.0}, "crit_avg_volume", PASS),  # >= 500,000 inclusive
        ({"vol_avg_50": 499_999.0}, "crit_avg_volume", FAIL),
        ({"vol_avg_50": np.nan}, "crit_avg_volume", UNKNOWN),
        ({"sma_50": 100.0}, "crit_above_sma_50", FAIL),  # equal is not above
        ({"sma_50": 99.99}, "crit_above_sma_50", PASS),
        ({"sma_50": np.nan}, "crit_above_sma_50", UNKNOWN),
        ({"sma_200": 100.0}, "crit_above_sma_200", FAIL),
        ({"sma_200": np.nan}, "crit_above_sma_200", UNKNOWN),
        ({"close": np.nan}, "crit_above_sma_50", UNKNOWN),
        ({"close": np.nan}, "crit_above_sma_200", UNKNOWN),
    ],
)
def test_criterion_boundaries(overrides, criterion, status):
    row = criteria_of(overrides)
    assert row[criterion] == status
    assert row["passes_screen"] == (status == PASS)
    assert row["criteria_passed"] == 5 - sum(row[c] != PASS for c in CRITERIA)


@pytest.mark.parametrize(
    ("caps", "status"),
    [({"XYZ": 1e9}, PASS), ({"XYZ": 999_999_999.0}, FAIL), ({"XYZ": np.nan}, UNKNOWN),
     ({"OTHER": 5e9}, UNKNOWN)],
)  # fmt: skip
def test_market_cap_criterion(caps, status):
    assert criteria_of({}, caps)["crit_market_cap"] == status


def test_no_fundamentals_at_all_means_unknown_cap():
    row = evaluate_criteria(indicators(stock("XYZ")), None).iloc[0]
    assert row["crit_market_cap"] == UNKNOWN
    assert np.isnan(row["market_cap"])
    assert row["criteria_passed"] == 4


def test_unknown_cap_is_flagged_and_included_unless_required():
    row = criteria_of({}, {})
    assert row["crit_market_cap"] == UNKNOWN and row["passes_screen"]
    strict = ScreenParams(require_known_market_cap=True)
    assert not criteria_of({}, {}, strict)["passes_screen"]
    assert criteria_of({}, None, strict)["passes_screen"]  # known 5e9 cap still passes
    assert not criteria_of({}, {"XYZ": 5e8})["passes_screen"]  # a known small cap always fails


def test_unknown_is_never_a_pass_for_other_criteria():
    row = criteria_of({"rs_rating": pd.NA, "vol_avg_50": np.nan})
    assert not row["passes_screen"]
    assert row["criteria_passed"] == 3


def test_screen_params_override():
    params = ScreenParams(min_rs_rating=90, min_avg_volume=2_000_000, min_market_cap=1e10)
    row = criteria_of({}, params=params)
    assert (row["crit_rs_rating"], row["crit_avg_volume"], row["crit_market_cap"]) == (
        FAIL,
        FAIL,
        FAIL,
    )
    assert not row["passes_screen"]
    with pytest.raises(ValueError):
        ScreenParams(min_rs_rating=-1)
    with pytest.raises(ValueError):
        ScreenParams(min_avg_volume=np.nan)


def test_benchmarks_are_never_screened():
    frame = indicators(stock("SPY", rs_rating=99), stock("QQQ"), stock("^VIX"), stock("AAA"))
    judged = evaluate_criteria(frame)
    assert judged["symbol"].tolist() == ["AAA"]


def test_real_fundamentals_snapshot():
    caps = read_fundamentals_snapshots(FUNDAMENTALS)
    frame = indicators(stock("AAPL"), stock("BRK-B"), stock("NOT-LISTED"))
    judged = evaluate_criteria(frame, caps).set_index("symbol")
    assert judged.loc["AAPL", "crit_market_cap"] == PASS  # trillions
    assert judged.loc["AAPL", "market_cap_as_of"] == SNAPSHOT_DAY
    assert judged.loc["BRK-B", "crit_market_cap"] == UNKNOWN  # no market cap in the snapshot
    assert judged.loc["NOT-LISTED", "crit_market_cap"] == UNKNOWN
    assert judged.loc["NOT-LISTED", "market_cap_as_of"] is None


# --- point in time: the latest snapshot at or before each session --------------------------------


def test_as_of_join_picks_the_latest_snapshot_at_or_before_each_session():
    snapshots = pd.concat(
        [
            fundamentals(as_of=dt.date(2020, 1, 2), AAA=5e8, BBB=3e9),  # AAA small then
            fundamentals(as_of=dt.date(2021, 1, 4), AAA=5e9, BBB=np.nan),  # BBB not in it
            fundamentals(as_of=dt.date(2022, 1, 3), CCC=2e9),
        ]
    )
    sessions = [dt.date(2019, 12, 31), dt.date(2020, 1, 2), dt.date(2020, 6, 1),
                dt.date(2021, 1, 4), dt.date(2022, 6, 1)]  # fmt: skip
    frame = indicators(*(stock(s, date=d) for d in sessions for s in ("AAA", "BBB", "CCC")))
    judged = evaluate_criteria(frame, snapshots).set_index(["symbol", "date"])
    expected = {  # (symbol, session): (criterion, cap, as_of of the snapshot used)
        ("AAA", dt.date(2019, 12, 31)): (UNKNOWN, np.nan, None),  # before every snapshot
        ("AAA", dt.date(2020, 1, 2)): (FAIL, 5e8, dt.date(2020, 1, 2)),  # known on its day
        ("AAA", dt.date(2020, 6, 1)): (FAIL, 5e8, dt.date(2020, 1, 2)),
        ("AAA", dt.date(2021, 1, 4)): (PASS, 5e9, dt.date(2021, 1, 4)),
        ("AAA", dt.date(2022, 6, 1)): (PASS, 5e9, dt.date(2021, 1, 4)),
        # a newer snapshot without BBB's cap says nothing about it: the older cap still holds
        ("BBB", dt.date(2022, 6, 1)): (PASS, 3e9, dt.date(2020, 1, 2)),
        ("CCC", dt.date(2021, 1, 4)): (UNKNOWN, np.nan, None),
        ("CCC", dt.date(2022, 6, 1)): (PASS, 2e9, dt.date(2022, 1, 3)),
    }
    for key, (status, cap, as_of) in expected.items():
        row = judged.loc[key]
        assert row["crit_market_cap"] == status, key
        assert (np.isnan(row["market_cap"]) and np.isnan(cap)) or row["market_cap"] == cap, key
        assert row["market_cap_as_of"] == as_of, key
    # datetime64 session dates (a table read back another way) join the same
    frame["date"] = pd.to_datetime(frame["date"])
    again = evaluate_criteria(frame, snapshots)
    pd.testing.assert_series_equal(
        again["crit_market_cap"], judged["crit_market_cap"].reset_index(drop=True)
    )


def test_session_before_every_snapshot_is_unknown_never_a_pass():
    # 2019 against the only real snapshot, of 2025-02-01: nothing was known yet.
    frame = indicators(stock("AAPL", date=dt.date(2019, 3, 1)), stock("AAPL"))
    snapshots = read_fundamentals_snapshots(FUNDAMENTALS)
    env = environment((dt.date(2019, 3, 1), "A"), (DAY, "A"))
    watch = screen_watchlist(frame, env, snapshots).set_index("date")
    early = watch.loc[dt.date(2019, 3, 1)]
    assert early["crit_market_cap"] == UNKNOWN and np.isnan(early["market_cap"])
    assert early["criteria_passed"] == 4  # unknown is never counted as a pass
    assert watch.loc[DAY, "crit_market_cap"] == PASS
    strict = ScreenParams(require_known_market_cap=True)
    assert screen_watchlist(frame, env, snapshots, strict)["date"].tolist() == [DAY]


def test_fundamentals_without_as_of_are_refused():
    # A snapshot that does not say when it was known would be applied to every date (look-ahead).
    undated = fundamentals(AAA=5e9).drop(columns="as_of")
    with pytest.raises(ScreenInputError, match="as_of"):
        evaluate_criteria(indicators(stock("AAA")), undated)


# --- the watchlist -------------------------------------------------------------------------------


def test_watchlist_lists_only_passing_stocks_with_sized_plan():
    frame = indicators(
        stock("AAA"),
        stock("LOW", rs_rating=60),
        stock("SPY", rs_rating=None),
        stock("NOCAP"),
        stock("AAA", date=NEXT_DAY, close=102.0),
    )
    env = environment((DAY, "A"), (NEXT_DAY, "C"))
    watch = screen_watchlist(frame, env, fundamentals(AAA=5e9, LOW=5e9))
    assert watch[["symbol", "date"]].values.tolist() == [
        ["AAA", DAY],
        ["NOCAP", DAY],
        ["AAA", NEXT_DAY],
    ]
    first = watch.iloc[0]
    assert first["environment"] == "A"
    assert first["crit_market_cap"] == PASS and watch.iloc[1]["crit_market_cap"] == UNKNOWN
    assert first["criteria_passed"] == 5
    # Edges: above 50, above 200, 50 > 200, rs >= 80, within 15% of high, RSI 60, MACD > signal.
    assert (first["edges_raw"], first["edges"]) == (7, 7)
    # A: base 100k x 10% x 1.30 = 13,000; risk 500 / (2 x 2) x 100 = 12,500 -> 125 shares.
    assert first["stop"] == 96.0
    assert first["position_value"] == pytest.approx(12_500.0)
    assert first["shares"] == 125
    assert first["risk_dollars"] == pytest.approx(500.0)
    assert first["target_1"] == pytest.approx(110.0)
    assert first["sizing_status"] == "sized"
    second_day = watch.iloc[2]
    # C: base 100k x 5% x 1.30 = 6,500; risk 250 / 4 x 102 = 6,375 -> 62 shares (6,375 / 102 = 62.5).
    assert second_day["environment"] == "C"
    assert second_day["position_value"] == pytest.approx(6_375.0)
    assert second_day["shares"] == 62


def test_watchlist_sorted_by_heat_order_and_heat_applied():
    # C heat limit 1% of 100k = 1,000; each row risks 250 (62 x 4 = 248 after the floor at 100).
    rows = [stock(f"S{i}", rs_rating=80 + i) for i in range(6)]
    watch = screen_watchlist(indicators(*rows), environment((DAY, "C")))
    assert watch["symbol"].tolist() == ["S5", "S4", "S3", "S2", "S1", "S0"]
    assert watch["risk_dollars"].tolist()[:4] == pytest.approx([248.0] * 4)
    assert watch["heat_exceeded"].astype(bool).tolist() == [False] * 4 + [True] * 2


def test_watchlist_session_without_environment_is_listed_unsized():
    frame = indicators(stock("AAA"), stock("BBB", date=NEXT_DAY))
    watch = screen_watchlist(frame, environment((DAY, None)))
    assert watch["sizing_status"].tolist() == ["unsized: environment missing"] * 2
    assert watch["environment"].isna().all()
    assert watch["shares"].isna().all()


def test_watchlist_row_with_nan_atr_is_unsized_not_a_crash():
    frame = indicators(stock("AAA", atr_14=np.nan), stock("BBB"))
    watch = screen_watchlist(frame, environment((DAY, "B"))).set_index("symbol")
    assert watch.loc["AAA", "sizing_status"] == "unsized: atr_14 missing or not positive"
    assert watch.loc["BBB", "sizing_status"] == "sized"


def test_watchlist_params_flow_through():
    frame = indicators(stock("AAA"))
    watch = screen_watchlist(
        frame,
        environment((DAY, "A")),
        params=ScreenParams(require_known_market_cap=True),
    )
    assert watch.empty
    watch = screen_watchlist(frame, environment((DAY, "A")), sizing=SizingParams(equity=10_000.0))
    assert watch.iloc[0]["shares"] == 12  # 1,300 vs 1,250 -> 1,250 / 100


def test_empty_and_malformed_inputs():
    empty = screen_watchlist(indicators(stock("AAA")).iloc[0:0], environment((DAY, "A")))
    assert empty.empty and {"symbol", "shares", *CRITERIA} <= set(empty.columns)
    frame = indicators(stock("AAA"))
    with pytest.raises(ScreenInputError, match="duplicated"):
        evaluate_criteria(pd.concat([frame, frame]))
    with pytest.raises(ScreenInputError, match="vol_avg_50"):
        evaluate_criteria(frame.drop(columns=["vol_avg_50"]))
    with pytest.raises(ScreenInputError, match="duplicated"):
        evaluate_criteria(frame, fundamentals(AAA=1e9).pipe(lambda f: pd.concat([f, f])))
    two_days = pd.concat([fundamentals(AAA=1e9), fundamentals(as_of=DAY, AAA=2e9)])
    assert evaluate_criteria(frame, two_days).iloc[0]["market_cap"] == 2e9  # one per as_of is fine
    with pytest.raises(ScreenInputError, match="non-numeric market_cap"):
        evaluate_criteria(frame, fundamentals(AAA="big"))
    with pytest.raises(ScreenInputError, match="duplicated"):
        screen_watchlist(frame, pd.concat([environment((DAY, "A"))] * 2))
    with pytest.raises(ScreenInputError, match="heat_limit"):
        screen_watchlist(frame, environment((DAY, "A")).drop(columns=["heat_limit"]))


def test_watchlist_columns_and_date_types_join():
    # The environment table read back with datetime64 dates still joins to datetime.date rows.
    env = environment((DAY, "A"))
    env["date"] = pd.to_datetime(env["date"])
    watch = screen_watchlist(indicators(stock("AAA")), env)
    assert list(watch.columns) == list(WATCHLIST_COLUMNS)
    assert watch.iloc[0]["environment"] == "A"
    assert watch.iloc[0]["date"] == DAY
