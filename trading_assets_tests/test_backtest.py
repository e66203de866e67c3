"""The backtest engine (trading_assets.core.backtest): ma_crossover and rsi_mean_reversion against a
plain per-bar Python reference on real shared data, the fill rules on hand-built bars, no
look-ahead, sleeve independence, and input errors. The stdev strategy: test_backtest_stdev.py.

The references below are written from the rules (result.py, sleeves.py's docstring), one bar at a
time with Python objects, and share no code with the engine.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest import (
    STRATEGIES,
    TRADE_COLUMNS,
    BacktestInputError,
    run_backtest,
)
from trading_assets.core.indicators import compute_indicators
from trading_assets_tests.conftest import shared_prices

# Real data: six symbols over nine and a half years; GEV lists on 2024-03-27 (its sleeve holds cash
# before), ^VIX has no volume.
SYMBOLS = ["AAPL", "GEV", "JPM", "MSFT", "XOM", "^VIX"]
START, END = "2016-01-01", "2025-07-23"
EQUITY = 600_000.0
OHLC = ("open", "high", "low", "close")
ENTRY_FIELDS = ["strategy", "symbol", "side", "setup", "entry_date", "entry_price", "shares"]
FLOAT_FIELDS = ["entry_price", "exit_price", "fees", "pnl", "r_multiple"]


# ------------------------------------------------------------------------------------------------
# Shared helpers (test_backtest_stdev.py imports them)
# ------------------------------------------------------------------------------------------------


def with_indicators(prices: pd.DataFrame) -> pd.DataFrame:
    """Raw prices joined with compute_indicators' columns: the bars run_backtest takes."""
    indicators = compute_indicators(prices)
    return (
        prices.sort_values(["symbol", "date"])
        .reset_index(drop=True)
        .merge(indicators, on=["symbol", "date"], validate="one_to_one")
    )


def real_bars(gaps: bool = False) -> pd.DataFrame:
    """The six real symbols; with ``gaps``, some bars lose their open (only) or all of OHLC."""
    prices = shared_prices(SYMBOLS, START, END)
    if gaps:
        rng = np.random.default_rng(7)
        rows = rng.choice(len(prices), 60, replace=False)
        prices.loc[rows[:30], "open"] = np.nan
        prices.loc[rows[30:], list(OHLC)] = np.nan
    return with_indicators(prices)


def tradable(bar: dict) -> bool:
    return all(math.isfinite(bar[c]) and bar[c] > 0 for c in OHLC)


def symbol_rows(bars: pd.DataFrame, symbol: str) -> list[dict]:
    return bars[bars["symbol"] == symbol].sort_values("date").to_dict("records")


def reference_equity(bars: pd.DataFrame, values: dict[str, list], start_cash: float) -> pd.Series:
    """Each session: every symbol's sleeve value at its last bar on or before it (start_cash
    before its first), summed over symbols in name order."""
    sessions = sorted(set(bars["date"]))
    totals = []
    for day in sessions:
        total = 0.0
        for symbol in sorted(values):
            value = start_cash
            for bar_day, bar_value in values[symbol]:
                if bar_day <= day:
                    value = bar_value
            total += value
        totals.append(total)
    return pd.Series(totals, index=sessions)


def assert_trades_equal(actual: pd.DataFrame, expected: list[dict]) -> None:
    assert list(actual.columns) == list(TRADE_COLUMNS)
    expected_frame = pd.DataFrame(expected, columns=list(TRADE_COLUMNS))
    expected_frame = expected_frame.sort_values(["entry_date", "symbol"], kind="stable")
    expected_frame = expected_frame.reset_index(drop=True)
    assert len(actual) == len(expected_frame)
    for column in TRADE_COLUMNS:
        got, want = actual[column].to_numpy(), expected_frame[column].to_numpy()
        if column in FLOAT_FIELDS:
            np.testing.assert_allclose(
                got.astype(float), want.astype(float), rtol=1e-9, atol=1e-9, err_msg=column
            )
        else:
            assert [None if pd.isna(v) else v for v in got] == [
                None if pd.isna(v) else v for v in want
            ], column


def assert_equity_equal(actual: pd.Series, expected: pd.Series) -> None:
    assert list(actual.index) == list(expected.index)
    np.testing.assert_allclose(actual.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9)


def perturbed_after(prices: pd.DataFrame, cut: dt.date, seed: int = 1) -> pd.DataFrame:
    """Every OHLC price on or after ``cut`` scaled by a random factor per bar (a consistent bar)."""
    out = prices.copy()
    later = (out["date"] >= cut).to_numpy()
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0.0, 0.05, later.sum()))
    for c in OHLC:
        out.loc[later, c] = out.loc[later, c].to_numpy() * scale
    return out


def assert_no_look_ahead(strategy: str, params: dict | None = None, **kwargs) -> None:
    """Changing every price from ``cut`` on leaves the trades entered before it and the equity
    before it exactly as they were (and does change what comes after)."""
    prices = shared_prices(SYMBOLS, START, END)
    cut = dt.date(2021, 3, 1)
    bars, changed = with_indicators(prices), with_indicators(perturbed_after(prices, cut))
    early = (bars["date"] < cut).to_numpy()
    assert (bars.loc[~early, "close"] != changed.loc[~early, "close"]).any()
    # The indicators before the cut are untouched (they read no later price).
    pd.testing.assert_frame_equal(bars[early], changed[early])
    before = run_backtest(bars, strategy, params, equity=EQUITY, **kwargs)
    after = run_backtest(changed, strategy, params, equity=EQUITY, **kwargs)

    def entered_early(trades: pd.DataFrame) -> pd.DataFrame:
        return trades.loc[trades["entry_date"] < cut, ENTRY_FIELDS].reset_index(drop=True)

    assert len(entered_early(before.trades)) > 5
    pd.testing.assert_frame_equal(entered_early(before.trades), entered_early(after.trades))
    early_days = [d for d in before.equity.index if d < cut]
    pd.testing.assert_series_equal(before.equity[early_days], after.equity[early_days])
    assert not np.allclose(before.equity.to_numpy()[-1], after.equity.to_numpy()[-1])


# ------------------------------------------------------------------------------------------------
# The reference: ma_crossover and rsi_mean_reversion, one bar at a time
# ------------------------------------------------------------------------------------------------


def reference_signal_strategy(
    bars: pd.DataFrame,
    strategy: str,
    *,
    equity: float,
    commission_bps: float = 1.0,
    slippage_bps: float = 5.0,
    fast: str = "sma_20",
    slow: str = "sma_50",
    rsi_below: float = 30.0,
    rsi_above: float = 70.0,
) -> tuple[list[dict], pd.Series]:
    commission, slippage = commission_bps / 10_000, slippage_bps / 10_000
    symbols = sorted(set(bars["symbol"]))
    start_cash = equity / len(symbols)
    trades: list[dict] = []
    values: dict[str, list] = {}
    for symbol in symbols:
        cash, held, order, trade, last_close = start_cash, 0, None, None, None
        was_above = None  # ma_crossover: fast > slow at the last session both were known
        values[symbol] = []
        for bar in symbol_rows(bars, symbol):
            if tradable(bar):
                if order is not None and order[0] == "buy":
                    price = bar["open"] * (1 + slippage)
                    shares = math.floor(cash / (price * (1 + commission)))
                    if shares > 0:
                        fee = shares * price * commission
                        cash = cash - (shares * price + fee)
                        held = shares
                        trade = {
                            "strategy": strategy, "symbol": symbol, "side": "long",
                            "setup": None, "entry_date": bar["date"], "entry_price": price,
                            "shares": shares, "fees": fee, "risk": order[1],
                        }  # fmt: skip
                elif order is not None and order[0] == "sell":
                    price = bar["open"] * (1 - slippage)
                    fee = held * price * commission
                    cash = cash + (held * price - fee)
                    trade["fees"] += fee
                    trade.update(exit_date=bar["date"], exit_price=price, exit_reason="signal")
                    trade["pnl"] = held * (price - trade["entry_price"]) - trade["fees"]
                    trades.append(trade)
                    held, trade = 0, None
                order = None
                last_close = bar["close"]
                if strategy == "ma_crossover":
                    enter = leave = False
                    if not (math.isnan(bar[fast]) or math.isnan(bar[slow])):
                        above = bar[fast] > bar[slow]
                        enter = was_above is False and above
                        leave = was_above is True and not above
                        was_above = above
                else:
                    enter, leave = bar["rsi_14"] < rsi_below, bar["rsi_14"] > rsi_above
                if held == 0 and enter:
                    order = ("buy", 2.0 * bar["atr_14"])
                elif held > 0 and leave:
                    order = ("sell", None)
            values[symbol].append((bar["date"], cash + held * last_close if held else cash))
        if trade is not None:
            trade.update(exit_date=None, exit_price=np.nan, exit_reason=None)
            trade["pnl"] = held * (last_close - trade["entry_price"]) - trade["fees"]
            trades.append(trade)
    for trade in trades:
        trade["r_multiple"] = trade["pnl"] / (trade["shares"] * trade.pop("risk"))
    return trades, reference_equity(bars, values, start_cash)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return real_bars()


@pytest.fixture(scope="module")
def gapped_bars() -> pd.DataFrame:
    return real_bars(gaps=True)


@pytest.mark.parametrize("strategy", ["ma_crossover", "rsi_mean_reversion"])
@pytest.mark.parametrize("gaps", [False, True], ids=["clean", "gaps"])
def test_signal_strategies_equal_reference_on_real_data(strategy, gaps, bars, gapped_bars):
    frame = gapped_bars if gaps else bars
    result = run_backtest(frame, strategy, equity=EQUITY)
    trades, equity = reference_signal_strategy(frame, strategy, equity=EQUITY)
    assert len(trades) > 30
    assert_trades_equal(result.trades, trades)
    assert_equity_equal(result.equity, equity)
    assert result.strategy == strategy


def test_parameters_and_costs_reach_the_rules(bars):
    params = {"rsi_entry_below": 35.0, "rsi_exit_above": 60.0}
    result = run_backtest(
        bars, "rsi_mean_reversion", params, equity=EQUITY, commission_bps=10, slippage_bps=0
    )
    trades, equity = reference_signal_strategy(
        bars, "rsi_mean_reversion", equity=EQUITY, commission_bps=10, slippage_bps=0,
        rsi_below=35.0, rsi_above=60.0,
    )  # fmt: skip
    assert_trades_equal(result.trades, trades)
    assert_equity_equal(result.equity, equity)
    params = {"fast_average": "ema_12", "slow_average": "sma_200"}
    result = run_backtest(bars, "ma_crossover", params, equity=EQUITY)
    trades, equity = reference_signal_strategy(
        bars, "ma_crossover", equity=EQUITY, fast="ema_12", slow="sma_200"
    )
    assert_trades_equal(result.trades, trades)
    assert_equity_equal(result.equity, equity)


@pytest.mark.parametrize("strategy", ["ma_crossover", "rsi_mean_reversion"])
def test_no_look_ahead(strategy):
    assert_no_look_ahead(strategy)


@pytest.mark.parametrize("strategy", ["ma_crossover", "rsi_mean_reversion", "stdev"])
def test_a_symbols_trades_are_the_same_alone_and_among_others(strategy, bars):
    together = run_backtest(bars, strategy, equity=EQUITY).trades
    n = bars["symbol"].nunique()
    for symbol in ("AAPL", "GEV"):
        alone = run_backtest(bars[bars["symbol"] == symbol], strategy, equity=EQUITY / n).trades
        mine = together[together["symbol"] == symbol].reset_index(drop=True)
        assert len(mine) > 0
        pd.testing.assert_frame_equal(alone, mine)


# ------------------------------------------------------------------------------------------------
# Fill rules on hand-built bars
# ------------------------------------------------------------------------------------------------

DAYS = [dt.date(2024, 1, 2) + dt.timedelta(days=i) for i in range(40)]


def hand_bars(rows: list[dict], symbol: str = "X", first_day: int = 0) -> pd.DataFrame:
    """Bars from per-session dicts; unset prices default to a flat 100 bar, indicators to NaN."""
    base = {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1e6}
    columns = ["sma_20", "sma_50", "rsi_14", "atr_14", "zscore_20", "ema_slope_20"]
    frame = pd.DataFrame([{**base, **row} for row in rows])
    for column in [*columns, "atr_pct_rank_252"]:
        if column not in frame:
            frame[column] = np.nan
    frame.insert(0, "date", DAYS[first_day : first_day + len(rows)])
    frame.insert(0, "symbol", symbol)
    return frame


def test_market_orders_fill_at_the_next_open_with_slippage_and_commission():
    bars = hand_bars([
        {"rsi_14": 25.0, "atr_14": 2.0},  # entry signal at the close
        {"open": 101.0, "rsi_14": 50.0},  # filled at this open
        {"rsi_14": 75.0, "close": 110.0},  # exit signal
        {"open": 112.0, "close": 113.0},  # filled at this open
    ])  # fmt: skip
    result = run_backtest(
        bars, "rsi_mean_reversion", equity=10_000, commission_bps=10, slippage_bps=50
    )
    (trade,) = result.trades.to_dict("records")
    buy, sell = 101.0 * 1.005, 112.0 * 0.995  # slippage against the trader both ways
    shares = math.floor(10_000 / (buy * 1.001))
    fees = shares * buy * 0.001 + shares * sell * 0.001
    assert trade["entry_date"] == DAYS[1] and trade["exit_date"] == DAYS[3]
    assert trade["entry_price"] == pytest.approx(buy) and trade["exit_price"] == pytest.approx(sell)
    assert trade["shares"] == shares == 98
    assert trade["fees"] == pytest.approx(fees)
    assert trade["pnl"] == pytest.approx(shares * (sell - buy) - fees)
    assert trade["r_multiple"] == pytest.approx(trade["pnl"] / (shares * 2.0 * 2.0))
    assert (trade["side"], trade["setup"], trade["exit_reason"]) == ("long", None, "signal")
    cash_in_trade = 10_000 - shares * buy - shares * buy * 0.001
    np.testing.assert_allclose(
        result.equity.to_numpy(),
        [10_000, cash_in_trade + shares * 100, cash_in_trade + shares * 110, 10_000 + trade["pnl"]],
    )


def test_a_signal_waits_over_a_gap_bar_and_an_open_trade_is_marked_at_the_last_close():
    bars = hand_bars([
        {"rsi_14": 25.0, "atr_14": 2.0},
        {"open": np.nan, "rsi_14": 50.0},  # not traded on
        {"open": 104.0, "close": 106.0, "rsi_14": 50.0},
        {"open": np.nan, "high": np.nan, "low": np.nan, "close": np.nan},
    ])  # fmt: skip
    result = run_backtest(
        bars, "rsi_mean_reversion", equity=10_000, commission_bps=0, slippage_bps=0
    )
    (trade,) = result.trades.to_dict("records")
    assert trade["entry_date"] == DAYS[2] and trade["entry_price"] == 104.0
    assert trade["exit_date"] is None and math.isnan(trade["exit_price"])
    assert trade["exit_reason"] is None
    assert trade["pnl"] == pytest.approx(96 * (106.0 - 104.0))
    assert result.equity.iloc[-1] == pytest.approx(10_000 + 96 * 2.0)  # the gap keeps the mark


def test_ma_crossover_enters_on_the_cross_not_while_above():
    sma_50 = 100.0
    bars = hand_bars([
        {"sma_20": 101.0, "sma_50": sma_50, "atr_14": 1.0},  # above from the start: no cross
        {"sma_20": 99.0, "sma_50": sma_50, "atr_14": 1.0},
        {"sma_20": np.nan, "sma_50": sma_50},  # unknown: neither signal nor reset
        {"sma_20": 100.5, "sma_50": sma_50, "atr_14": 1.0},  # crosses above -> buy next open
        {"sma_20": 101.0, "sma_50": sma_50},
        {"sma_20": 100.0, "sma_50": sma_50},  # equal: no longer above -> sell next open
        {"open": 103.0},
    ])  # fmt: skip
    result = run_backtest(bars, "ma_crossover", equity=10_000, commission_bps=0, slippage_bps=0)
    (trade,) = result.trades.to_dict("records")
    assert (trade["entry_date"], trade["exit_date"]) == (DAYS[4], DAYS[6])
    assert trade["exit_price"] == 103.0


def test_sleeves_split_equity_and_hold_cash_before_their_first_bar():
    a = hand_bars([{"rsi_14": 25.0, "atr_14": 1.0}, {"close": 120.0}, {"close": 130.0}], "A")
    b = hand_bars([{"rsi_14": 50.0}, {"rsi_14": 50.0}], "B", first_day=1)
    result = run_backtest(pd.concat([a, b]), "rsi_mean_reversion", equity=20_000,
                          commission_bps=0, slippage_bps=0)  # fmt: skip
    assert list(result.equity.index) == DAYS[:3]
    np.testing.assert_allclose(
        result.equity.to_numpy(), [20_000, 20_000 + 100 * 20, 20_000 + 100 * 30]
    )


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def test_empty_bars_give_no_trades_and_an_empty_equity(bars):
    for strategy in ("ma_crossover", "rsi_mean_reversion", "stdev"):
        result = run_backtest(bars.iloc[:0], strategy)
        assert list(result.trades.columns) == list(TRADE_COLUMNS) and result.trades.empty
        assert result.equity.empty and result.equity.dtype == np.float64


def test_dates_as_datetime64_give_the_same_result(bars):
    as_dates = run_backtest(bars, "ma_crossover")
    as_datetime64 = run_backtest(bars.assign(date=pd.to_datetime(bars["date"])), "ma_crossover")
    pd.testing.assert_frame_equal(as_dates.trades, as_datetime64.trades)
    pd.testing.assert_series_equal(as_dates.equity, as_datetime64.equity)
    shuffled = run_backtest(bars.sample(frac=1.0, random_state=3), "ma_crossover")
    pd.testing.assert_frame_equal(as_dates.trades, shuffled.trades)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.drop(columns=["rsi_14"]), "lacks column"),
        (lambda b: pd.concat([b, b.iloc[[5]]]), "duplicated"),
        (lambda b: b.assign(symbol=b["symbol"].where(b.index != 3, None)), "symbol"),
        (lambda b: b.assign(date=b["date"].where(b.index != 3, None)), "date"),
        (lambda b: b.assign(close=b["close"].astype(str).where(b.index != 3, "x")), "non-numeric"),
        (lambda b: b.to_dict("records"), "DataFrame"),
    ],
    ids=[
        "missing column",
        "duplicated row",
        "null symbol",
        "null date",
        "text price",
        "not a frame",
    ],
)
def test_bad_bars_are_rejected(bars, change, message):
    with pytest.raises(BacktestInputError, match=message):
        run_backtest(change(bars), "rsi_mean_reversion")


def test_unknown_strategy_lists_the_strategies(bars):
    with pytest.raises(BacktestInputError) as error:
        run_backtest(bars, "buy_and_hope")
    assert all(name in str(error.value) for name in STRATEGIES)


@pytest.mark.parametrize(
    ("strategy", "params", "message"),
    [
        ("rsi_mean_reversion", {"rsi_entry": 20}, "unknown parameter"),
        ("ma_crossover", {"mr_arm_z": 1.0}, "unknown parameter"),
        ("rsi_mean_reversion", {"rsi_entry_below": float("nan")}, "finite"),
        ("rsi_mean_reversion", {"rsi_entry_below": "30"}, "finite"),
        ("rsi_mean_reversion", {"rsi_entry_below": 80.0}, "below"),
        ("rsi_mean_reversion", {"rsi_exit_above": 100.0}, "lie in"),
        ("ma_crossover", {"fast_average": "sma_21"}, "one of"),
        ("ma_crossover", {"fast_average": "sma_50"}, "both"),
        ("stdev", {"max_risk_per_trade": 1.5}, "lie in"),
        ("stdev", {"atr_multiplier_sl": 0}, "lie in"),
        ("stdev", {"tc_arm_z": True}, "finite"),
        ("stdev", ["mr_arm_z"], "dict"),
    ],
)
def test_bad_parameters_are_rejected(bars, strategy, params, message):
    with pytest.raises(BacktestInputError, match=message):
        run_backtest(bars, strategy, params)


@pytest.mark.parametrize(
    "costs",
    [
        {"equity": 0},
        {"equity": float("nan")},
        {"commission_bps": -1},
        {"slippage_bps": float("inf")},
    ],
)
def test_bad_equity_or_costs_are_rejected(bars, costs):
    with pytest.raises(BacktestInputError):
        run_backtest(bars, "ma_crossover", **costs)


def test_watchlist_momentum_is_dispatched_to_its_module(monkeypatch, bars):
    import sys
    import types

    seen = {}

    def fake(bars, params, **kwargs):
        seen.update(kwargs, params=params)
        return "momentum result"

    module = types.ModuleType("trading_assets.core.backtest.momentum")
    module.run_watchlist_momentum = fake
    monkeypatch.setitem(sys.modules, "trading_assets.core.backtest.momentum", module)
    environment, watchlist = pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]})
    result = run_backtest(bars, "watchlist_momentum", {"x": 1}, equity=5.0,
                          market_environment=environment, watchlist=watchlist)  # fmt: skip
    assert result == "momentum result"
    assert seen["params"] == {"x": 1} and seen["equity"] == 5.0
    assert seen["market_environment"] is environment and seen["watchlist"] is watchlist
    assert (seen["commission_bps"], seen["slippage_bps"]) == (1.0, 5.0)
