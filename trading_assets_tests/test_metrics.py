"""Performance metrics against quantstats 0.0.86 on real returns, edge cases, and trade statistics.

quantstats is the reference (a dev dependency): every key of performance_summary equals the
quantstats function the module docstring names, within 1e-12 (relative where values are large),
on daily returns of real symbols from the shared prices and on a backtest-like equity curve with
flat days, at rf = 0 and rf = 2 %. Where quantstats raises, warns or returns an infinity, the
value we return instead is spelled out here (DIVERGENCES) and asserted.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import quantstats as qs

from trading_assets.core.backtest.result import TRADE_COLUMNS
from trading_assets.core.metrics import (
    SUMMARY_KEYS,
    TRADE_STATISTICS_KEYS,
    MetricsInputError,
    drawdown,
    performance_summary,
    returns_from_equity,
    trade_statistics,
)
from trading_assets_tests.conftest import shared_prices

TOLERANCE = 1e-12
RISK_FREE_RATES = (0.0, 0.02)
# Liquid names, an index ETF, a late listing (GEV, from 2024-03-27: leading NaN on the common
# calendar) and the VIX (moves above +100 % a day, sessions the stock market was closed).
SYMBOLS = ("AAPL", "JPM", "XOM", "SPY", "GEV", "^VIX")
NAN = float("nan")


def quantstats_summary(returns: pd.Series, risk_free: float) -> dict[str, object]:
    """Each key from the quantstats function and arguments it matches; raised errors as values."""
    returns = returns.copy()
    returns.index = pd.DatetimeIndex(pd.to_datetime(returns.index))  # quantstats needs dates
    calls = {
        "total_return": lambda: qs.stats.comp(returns),
        "cagr": lambda: qs.stats.cagr(returns, compounded=True, periods=252),
        "volatility": lambda: qs.stats.volatility(returns, periods=252, annualize=True),
        "sharpe": lambda: qs.stats.sharpe(returns, rf=risk_free, periods=252, annualize=True),
        "sortino": lambda: qs.stats.sortino(returns, rf=risk_free, periods=252, annualize=True),
        "max_drawdown": lambda: qs.stats.max_drawdown(returns),
        "calmar": lambda: qs.stats.calmar(returns, compounded=True, periods=252),
        "win_rate": lambda: qs.stats.win_rate(returns),
        "profit_factor": lambda: qs.stats.profit_factor(returns),
        "avg_win": lambda: qs.stats.avg_win(returns),
        "avg_loss": lambda: qs.stats.avg_loss(returns),
    }
    out: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantstats' own warnings are not under test
        for key, call in calls.items():
            try:
                out[key] = float(call())
            except Exception as exc:  # noqa: BLE001 - recorded, compared against DIVERGENCES
                out[key] = exc
    return out


def same(ours: float, reference: float) -> bool:
    if math.isnan(ours) or math.isnan(reference):
        return math.isnan(ours) and math.isnan(reference)
    return math.isclose(ours, reference, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def assert_matches_quantstats(returns: pd.Series, risk_free: float, divergences=None) -> dict:
    """Every key equal to quantstats except those in ``divergences`` (key -> our value)."""
    divergences = divergences or {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy/pandas warning may escape
        ours = performance_summary(returns, risk_free)
    assert tuple(ours) == SUMMARY_KEYS
    assert all(type(v) is float for v in ours.values()), ours
    reference = quantstats_summary(returns, risk_free)
    for key in SUMMARY_KEYS:
        if key in divergences:
            assert same(ours[key], divergences[key]), (key, ours[key], reference[key])
            continue
        assert not isinstance(reference[key], Exception), (key, reference[key])
        assert same(ours[key], reference[key]), (key, ours[key], reference[key])
    return ours


# --- real returns --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    """Closes of SYMBOLS on the union of their dates (a symbol missing a date holds NaN)."""
    frame = shared_prices(list(SYMBOLS), "2010-01-01")
    wide = frame.pivot(index="date", columns="symbol", values="close")
    assert set(wide.columns) == set(SYMBOLS)
    return wide


@pytest.mark.parametrize("risk_free", RISK_FREE_RATES)
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_real_symbol_returns_match_quantstats(closes, symbol, risk_free):
    # The symbol's own sessions: one leading NaN from pct_change, as a caller would pass it.
    returns = closes[symbol].dropna().pct_change(fill_method=None)
    assert len(returns) > 300
    assert_matches_quantstats(returns, risk_free)


@pytest.mark.parametrize("risk_free", RISK_FREE_RATES)
@pytest.mark.parametrize("symbol", ["AAPL", "GEV"])
def test_returns_with_gaps_match_quantstats(closes, symbol, risk_free):
    # On the common calendar AAPL misses the VIX-only sessions (NaN inside), GEV every session
    # before its listing (thousands of leading NaN): quantstats skips them, so do we.
    returns = closes[symbol].pct_change(fill_method=None)
    assert returns.iloc[1:].isna().any()
    ours = assert_matches_quantstats(returns, risk_free)
    assert ours == performance_summary(returns.dropna(), risk_free)


def backtest_equity(close: pd.Series) -> pd.Series:
    """A long/flat 50-day-SMA rule on SPY closes with 5 bp per switch: many flat days."""
    in_market = (close > close.rolling(50).mean()).shift(1, fill_value=False)
    daily = close.pct_change(fill_method=None).fillna(0.0).where(in_market, 0.0)
    switches = in_market.astype(int).diff().abs().fillna(0.0)
    equity = 100_000.0 * (1.0 + daily - 0.0005 * switches).cumprod()
    equity.index = [pd.Timestamp(d).date() for d in close.index]  # as the engine: datetime.date
    return equity


@pytest.mark.parametrize("risk_free", RISK_FREE_RATES)
def test_backtest_equity_curve_matches_quantstats(closes, risk_free):
    equity = backtest_equity(closes["SPY"].dropna())
    returns = returns_from_equity(equity)
    flat_days = int((returns == 0).sum())
    assert 300 < flat_days < len(returns) - 300
    ours = assert_matches_quantstats(returns, risk_free)
    # The summary of the equity's returns agrees with the equity itself.
    assert ours["total_return"] == pytest.approx(equity.iloc[-1] / equity.iloc[0] - 1, rel=1e-12)
    assert ours["max_drawdown"] == pytest.approx(drawdown(equity).min(), rel=1e-12)


def test_risk_free_rate_is_de_annualised_geometrically(closes):
    returns = closes["SPY"].dropna().pct_change(fill_method=None).dropna()
    daily = 1.02 ** (1 / 252) - 1
    excess = returns - daily
    summary = performance_summary(returns, 0.02)
    assert summary["sharpe"] == pytest.approx(excess.mean() / excess.std() * math.sqrt(252), 1e-12)
    downside = math.sqrt((excess[excess < 0] ** 2).sum() / len(excess))
    assert summary["sortino"] == pytest.approx(excess.mean() / downside * math.sqrt(252), 1e-12)
    # rf touches only sharpe and sortino.
    plain = performance_summary(returns, 0.0)
    for key in set(SUMMARY_KEYS) - {"sharpe", "sortino"}:
        assert summary[key] == plain[key]


def test_negative_risk_free_is_subtracted():
    # quantstats applies rf only when rf > 0 (it would return the rf = 0 figures); we subtract it.
    returns = pd.Series([0.01, -0.02, 0.015, 0.0, -0.005, 0.02])
    daily = 0.99 ** (1 / 252) - 1
    excess = returns - daily
    summary = performance_summary(returns, -0.01)
    assert summary["sharpe"] == pytest.approx(excess.mean() / excess.std() * math.sqrt(252), 1e-12)
    assert summary["sharpe"] > performance_summary(returns, 0.0)["sharpe"]


@pytest.mark.parametrize("risk_free", [-1.0, -2.0, float("nan"), float("inf"), "2%", None, True])
def test_unusable_risk_free_is_refused(risk_free):
    with pytest.raises(MetricsInputError):
        performance_summary(pd.Series([0.01, -0.01]), risk_free)


def test_non_numeric_returns_are_refused():
    with pytest.raises(MetricsInputError):
        performance_summary(pd.Series(["a", "b"]))
    with pytest.raises(MetricsInputError):
        performance_summary([0.01, 0.02])


# --- edge cases ----------------------------------------------------------------------------------


def _days(n: int) -> pd.DatetimeIndex:
    return pd.bdate_range("2024-01-02", periods=n)


def _series(values) -> pd.Series:
    return pd.Series(values, index=_days(len(values)), dtype="float64")


EMPTY_RESULT = {
    "total_return": 0.0,  # qs.comp gives 0.0 too; the rest of quantstats raises
    "cagr": NAN,
    "volatility": NAN,
    "sharpe": NAN,
    "sortino": NAN,
    "max_drawdown": 0.0,
    "calmar": NAN,
    "win_rate": NAN,  # quantstats: 0.0 with a UserWarning
    "profit_factor": NAN,  # quantstats: 0.0
    "avg_win": NAN,
    "avg_loss": NAN,
}

# case -> (returns, {rf: {key: our value where quantstats differs}}). Every other key equals
# quantstats. Our value is NaN wherever the ratio is undefined.
EDGE_CASES = {
    "no_losing_day": (
        _series([0.01, 0.0, 0.02, 0.005]),
        {
            # sortino: NaN at rf 0 like quantstats (no downside); defined at rf 2 % (flat days
            # fall below the risk-free rate), equal to quantstats.
            0.0: {"calmar": NAN, "profit_factor": NAN},  # quantstats: inf, inf
            0.02: {"calmar": NAN, "profit_factor": NAN},
        },
    ),
    "all_zero": (
        _series([0.0] * 5),
        {
            # quantstats: sharpe NaN (RuntimeWarning) at rf 0, -inf at rf 2 %; calmar NaN
            # (RuntimeWarning); win_rate 0.0 (UserWarning); profit_factor 0.0.
            0.0: {"sharpe": NAN, "calmar": NAN, "win_rate": NAN, "profit_factor": NAN},
            0.02: {"sharpe": NAN, "calmar": NAN, "win_rate": NAN, "profit_factor": NAN},
        },
    ),
    "one_gain": (
        _series([0.01]),
        {rf: {"calmar": NAN, "profit_factor": NAN} for rf in RISK_FREE_RATES},  # qs: inf, inf
    ),
    "one_loss": (_series([-0.01]), {rf: {} for rf in RISK_FREE_RATES}),
    "nan_leading_and_inside": (
        _series([NAN, NAN, 0.01, -0.02, NAN, 0.03, -0.004]),
        {rf: {} for rf in RISK_FREE_RATES},
    ),
    "zero_variance_gains": (
        _series([0.001] * 100),
        {
            # quantstats: volatility 3.5e-18 (equal within 1e-12), sharpe 7.3e16 / 4.5e16 from
            # dividing by that noise, calmar inf, profit_factor inf.
            rf: {"volatility": 0.0, "sharpe": NAN, "calmar": NAN, "profit_factor": NAN}
            for rf in RISK_FREE_RATES
        },
    ),
    "zero_variance_losses": (
        _series([-0.0007] * 100),
        {rf: {"volatility": 0.0, "sharpe": NAN} for rf in RISK_FREE_RATES},  # qs: -5e16
    ),
    "empty": (_series([]), {rf: EMPTY_RESULT for rf in RISK_FREE_RATES}),
    "all_nan": (_series([NAN, NAN, NAN]), {rf: EMPTY_RESULT for rf in RISK_FREE_RATES}),
}


@pytest.mark.parametrize("risk_free", RISK_FREE_RATES)
@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases_match_quantstats_or_the_documented_value(case, risk_free):
    returns, divergences = EDGE_CASES[case]
    assert_matches_quantstats(returns, risk_free, divergences[risk_free])


def test_edge_case_values_by_hand():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one_loss = performance_summary(_series([-0.01]))
        gains = performance_summary(_series([0.01, 0.0, 0.02, 0.005]))
        zeros = performance_summary(_series([0.0] * 5), 0.02)
    assert one_loss["sortino"] == pytest.approx(-math.sqrt(252))
    assert one_loss["max_drawdown"] == pytest.approx(-0.01)
    assert one_loss["cagr"] == pytest.approx(0.99**252 - 1)
    assert math.isnan(one_loss["volatility"]) and math.isnan(one_loss["sharpe"])
    assert gains["win_rate"] == 1.0 and gains["max_drawdown"] == 0.0
    assert math.isnan(gains["sortino"]) and math.isnan(gains["avg_loss"])
    assert zeros["volatility"] == 0.0 and zeros["total_return"] == 0.0 and zeros["cagr"] == 0.0
    assert zeros["sortino"] == pytest.approx(-math.sqrt(252))  # every day 1 x rf below


def test_infinite_returns_are_missing_observations():
    returns = _series([0.01, np.inf, -0.02, -np.inf, 0.03])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert performance_summary(returns) == performance_summary(returns[np.isfinite(returns)])


def test_overflowing_cagr_is_nan():
    # Annualising a huge gain over a few days can pass the float range: quantstats gives inf with
    # an overflow RuntimeWarning, we give NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = performance_summary(_series([0.9]))  # 1.9^252 = 1e70
        overflows = performance_summary(_series([20.0]))  # 21^252 > 1.8e308
    assert fits["cagr"] == pytest.approx(1.9**252 - 1)
    assert overflows["total_return"] == pytest.approx(20.0)
    assert math.isnan(overflows["cagr"])


# --- returns_from_equity and drawdown ------------------------------------------------------------


def test_returns_from_equity_drops_the_first_session():
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4), dt.date(2024, 1, 5)]
    equity = pd.Series([100.0, 110.0, 99.0, 99.0], index=days)
    returns = returns_from_equity(equity)
    assert list(returns.index) == days[1:]
    assert returns.tolist() == pytest.approx([0.10, -0.10, 0.0])
    assert returns_from_equity(equity.iloc[:1]).empty


def test_drawdown_from_the_running_high():
    equity = pd.Series([100.0, 120.0, 90.0, 130.0, 117.0])
    assert drawdown(equity).tolist() == pytest.approx([0.0, 0.0, -0.25, 0.0, -0.10])
    # A first session below nothing: the curve starts at its own high.
    assert drawdown(pd.Series([50.0, 40.0])).tolist() == pytest.approx([0.0, -0.20])
    assert performance_summary(returns_from_equity(equity))["max_drawdown"] == pytest.approx(-0.25)


# --- trade statistics ----------------------------------------------------------------------------

SESSIONS = [d.date() for d in pd.bdate_range("2024-01-03", periods=10)]  # Wed 3 .. Tue 16 Jan


def trades_frame(rows: list[dict]) -> pd.DataFrame:
    base = dict.fromkeys(TRADE_COLUMNS)
    frame = pd.DataFrame([{**base, "strategy": "stdev", "symbol": "AAPL", **r} for r in rows])
    return frame.reindex(columns=list(TRADE_COLUMNS))


def flat_equity(sessions=SESSIONS) -> pd.Series:
    return pd.Series(100_000.0, index=sessions)


def test_trade_statistics_by_hand():
    d = SESSIONS
    trades = trades_frame(
        [
            # Closed win, Wed 3 -> Mon 8 Jan: 5 calendar days, open on sessions 0, 1, 2.
            {"entry_date": d[0], "exit_date": d[3], "pnl": 100.0, "r_multiple": 1.0},
            # Closed loss overlapping the first on session 2: 3, 4 more. Fri 5 -> Wed 10: 5 days.
            {"entry_date": d[2], "exit_date": d[5], "pnl": -50.0, "r_multiple": -0.5},
            # A user trade in and out on one session: no R, pnl 0 is no win, adds no exposure.
            {"entry_date": d[6], "exit_date": d[6], "pnl": 0.0, "r_multiple": None},
            # Still open from session 7 through the last: exposure 7, 8, 9; not a closed trade.
            {"entry_date": d[7], "exit_date": None, "pnl": 20.0, "r_multiple": 0.4},
        ]
    )
    stats = trade_statistics(trades, flat_equity())
    assert tuple(stats) == TRADE_STATISTICS_KEYS
    assert stats["trade_count"] == 3 and type(stats["trade_count"]) is int
    assert stats["trade_win_rate"] == pytest.approx(1 / 3)
    assert stats["expectancy_r"] == pytest.approx(0.25)
    assert stats["avg_holding_days"] == pytest.approx((5 + 5 + 0) / 3)
    assert stats["exposure_pct"] == pytest.approx(80.0)  # sessions 0-4 and 7-9 of 10


def test_no_trades():
    empty = trades_frame([])
    assert empty.empty and list(empty.columns) == list(TRADE_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = trade_statistics(empty, flat_equity())
    assert stats["trade_count"] == 0 and stats["exposure_pct"] == 0.0
    for key in ("trade_win_rate", "expectancy_r", "avg_holding_days"):
        assert math.isnan(stats[key])
    # No session at all: exposure undefined.
    assert math.isnan(trade_statistics(empty, flat_equity([]))["exposure_pct"])


def test_only_open_trades():
    trades = trades_frame([{"entry_date": SESSIONS[5], "pnl": -10.0, "r_multiple": -0.1}])
    stats = trade_statistics(trades, flat_equity())
    assert stats["trade_count"] == 0 and math.isnan(stats["trade_win_rate"])
    assert math.isnan(stats["expectancy_r"]) and stats["exposure_pct"] == pytest.approx(50.0)


def test_partial_exits_count_as_trades_and_overlap_counts_once():
    d = SESSIONS
    trades = trades_frame(
        [
            {"entry_date": d[1], "exit_date": d[3], "pnl": 30.0, "r_multiple": 1.5},
            {"entry_date": d[1], "exit_date": d[5], "pnl": 60.0, "r_multiple": 3.0},
            {"entry_date": d[2], "exit_date": d[4], "pnl": -5.0, "r_multiple": np.inf},
        ]
    )
    stats = trade_statistics(trades, flat_equity())
    assert stats["trade_count"] == 3
    assert stats["trade_win_rate"] == pytest.approx(2 / 3)
    assert stats["expectancy_r"] == pytest.approx(2.25)  # the infinite R is left out
    assert stats["exposure_pct"] == pytest.approx(40.0)  # sessions 1-4


def test_trades_outside_the_curve_and_timestamp_dates():
    d = SESSIONS
    trades = trades_frame(
        [
            # Entered before the first session, exits on session 2: open on sessions 0, 1.
            {"entry_date": "2023-12-28", "exit_date": pd.Timestamp(d[2]), "pnl": 1.0},
            # Exits after the last session: open on 8, 9.
            {"entry_date": pd.Timestamp(d[8]), "exit_date": "2024-02-01", "pnl": 1.0},
        ]
    )
    stats = trade_statistics(trades, flat_equity())
    assert stats["exposure_pct"] == pytest.approx(40.0)
    assert math.isnan(stats["expectancy_r"])
    assert stats["avg_holding_days"] == pytest.approx((8 + 17) / 2)  # Dec 28-Jan 5, Jan 15-Feb 1


def test_unusable_trades_are_refused():
    d = SESSIONS
    with pytest.raises(MetricsInputError, match="exit before entry"):
        trade_statistics(
            trades_frame([{"entry_date": d[3], "exit_date": d[1], "pnl": 1.0}]), flat_equity()
        )
    with pytest.raises(MetricsInputError, match="without a pnl"):
        trade_statistics(trades_frame([{"entry_date": d[1], "exit_date": d[3]}]), flat_equity())
    with pytest.raises(MetricsInputError, match="without an entry_date"):
        trade_statistics(trades_frame([{"exit_date": d[3], "pnl": 1.0}]), flat_equity())
    with pytest.raises(MetricsInputError, match="lacks column"):
        trade_statistics(pd.DataFrame({"pnl": [1.0]}), flat_equity())
