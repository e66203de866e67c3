"""The stdev strategy: the engine against a plain per-bar Python reference on real shared data (with
and without threshold multipliers), no look-ahead, and the state machine and fills on hand-built
bars. The reference is written from the rules in stdev.py's docstring and shares no code with it.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest import run_backtest
from trading_assets_tests.test_backtest import (
    DAYS,
    EQUITY,
    assert_equity_equal,
    assert_no_look_ahead,
    assert_trades_equal,
    hand_bars,
    real_bars,
    reference_equity,
    symbol_rows,
    tradable,
)

DEFAULTS = {
    "mr_arm_z": 1.2, "mr_trigger_z": 0.6, "tc_arm_z": 1.8, "tc_trigger_z": 0.6,
    "atr_percentile_cap": 85.0, "atr_multiplier_sl": 1.4, "min_rr_ratio": 1.5,
    "max_risk_per_trade": 0.01,
}  # fmt: skip
NEEDED = ("zscore_20", "ema_slope_20", "atr_14", "atr_pct_rank_252")


def reference_stdev(
    bars: pd.DataFrame,
    *,
    equity: float,
    commission_bps: float = 1.0,
    slippage_bps: float = 5.0,
    multipliers: dict | None = None,
    **overrides,
) -> tuple[list[dict], pd.Series]:
    p = {**DEFAULTS, **overrides}
    commission, slippage = commission_bps / 10_000, slippage_bps / 10_000
    multipliers = multipliers or {}
    symbols = sorted(set(bars["symbol"]))
    start_cash = equity / len(symbols)
    trades: list[dict] = []
    values: dict[str, list] = {}
    for symbol in symbols:
        cash, last_close = start_cash, None
        mr = tc = None  # the side each setup is armed for
        order = trade = None
        values[symbol] = []
        for bar in symbol_rows(bars, symbol):
            if not tradable(bar):
                held = trade["shares"] * trade["sign"] if trade else 0
                values[symbol].append((bar["date"], cash + held * last_close if trade else cash))
                continue
            if order is not None:
                side, setup, risk = order
                sign = 1 if side == "long" else -1
                price = bar["open"] * (1 + slippage) if sign == 1 else bar["open"] * (1 - slippage)
                shares = min(
                    math.floor(p["max_risk_per_trade"] * cash / risk),
                    math.floor(cash / (price * (1 + commission))),
                )
                if shares > 0:
                    fee = shares * price * commission
                    cash = cash - shares * price - fee if sign == 1 else cash + shares * price - fee
                    trade = {
                        "strategy": "stdev", "symbol": symbol, "side": side, "setup": setup,
                        "entry_date": bar["date"], "entry_price": price, "shares": shares,
                        "fees": fee, "risk": risk, "sign": sign,
                        "stop": price - sign * risk,
                        "target": price + sign * p["min_rr_ratio"] * risk,
                    }  # fmt: skip
                order = None
            if trade is not None:
                exit_at = None
                o, h, lo, stop, target = bar["open"], bar["high"], bar["low"], trade["stop"], trade["target"]  # fmt: skip
                if trade["sign"] == 1:
                    if o <= stop:
                        exit_at = ("stop", o)
                    elif o >= target:
                        exit_at = ("target", o)
                    elif lo <= stop:
                        exit_at = ("stop", stop)
                    elif h >= target:
                        exit_at = ("target", target)
                else:
                    if o >= stop:
                        exit_at = ("stop", o)
                    elif o <= target:
                        exit_at = ("target", o)
                    elif h >= stop:
                        exit_at = ("stop", stop)
                    elif lo <= target:
                        exit_at = ("target", target)
                if exit_at is not None:
                    reason, price = exit_at
                    fee = trade["shares"] * price * commission
                    if trade["sign"] == 1:
                        cash = cash + trade["shares"] * price - fee
                    else:
                        cash = cash - trade["shares"] * price - fee
                    trade["fees"] += fee
                    trade.update(exit_date=bar["date"], exit_price=price, exit_reason=reason)
                    trade["pnl"] = (
                        trade["sign"] * trade["shares"] * (price - trade["entry_price"])
                        - trade["fees"]
                    )
                    trades.append(trade)
                    trade = None
            last_close = bar["close"]
            if trade is None and not any(math.isnan(bar[c]) for c in NEEDED):
                m = multipliers.get(bar["date"], (1.0, 1.0, 1.0, 1.0))
                mr_arm, mr_trigger = p["mr_arm_z"] * m[0], p["mr_trigger_z"] * m[1]
                tc_arm, tc_trigger = p["tc_arm_z"] * m[2], p["tc_trigger_z"] * m[3]
                z, slope = bar["zscore_20"], bar["ema_slope_20"]
                if (tc == "long" and not slope > 0) or (tc == "short" and not slope < 0):
                    tc = None  # the trend's slope flipped
                mr_fired = mr if mr is not None and abs(z) <= mr_trigger else None
                tc_fired = tc if tc is not None and abs(z) <= tc_trigger else None
                if mr_fired:
                    mr = None
                if tc_fired:
                    tc = None
                fired = (tc_fired, "TC") if tc_fired else (mr_fired, "MR") if mr_fired else None
                if fired and bar["atr_pct_rank_252"] <= p["atr_percentile_cap"]:
                    order = (fired[0], fired[1], p["atr_multiplier_sl"] * bar["atr_14"])
                    mr = tc = None
                else:
                    if z <= -mr_arm:
                        mr = "long"
                    elif z >= mr_arm:
                        mr = "short"
                    if z >= tc_arm:
                        if slope > 0:
                            tc = "long"
                        elif tc == "short":
                            tc = None
                    elif z <= -tc_arm:
                        if slope < 0:
                            tc = "short"
                        elif tc == "long":
                            tc = None
            held = trade["shares"] * trade["sign"] if trade else 0
            values[symbol].append((bar["date"], cash + held * last_close if trade else cash))
        if trade is not None:
            trade.update(exit_date=None, exit_price=np.nan, exit_reason=None)
            trade["pnl"] = (
                trade["sign"] * trade["shares"] * (last_close - trade["entry_price"])
                - trade["fees"]
            )
            trades.append(trade)
    for trade in trades:
        trade["r_multiple"] = trade["pnl"] / (trade["shares"] * trade["risk"])
    return trades, reference_equity(bars, values, start_cash)


def random_multipliers(sessions, seed: int = 11) -> pd.DataFrame:
    """Multipliers in [0.5, 2] on a random half of the sessions."""
    rng = np.random.default_rng(seed)
    days = sorted(rng.choice(np.array(sessions, dtype=object), len(sessions) // 2, replace=False))
    n = len(days)
    return pd.DataFrame({
        "date": days,
        **{c: rng.uniform(0.5, 2.0, n) for c in ("mr_arm", "mr_trigger", "tc_arm", "tc_trigger")},
        "confidence": rng.uniform(0, 1, n), "reasoning": "test", "source": "random",
    })  # fmt: skip


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return real_bars()


@pytest.fixture(scope="module")
def gapped_bars() -> pd.DataFrame:
    return real_bars(gaps=True)


@pytest.mark.parametrize("gaps", [False, True], ids=["clean", "gaps"])
def test_stdev_equals_reference_on_real_data(gaps, bars, gapped_bars):
    frame = gapped_bars if gaps else bars
    result = run_backtest(frame, "stdev", equity=EQUITY)
    trades, equity = reference_stdev(frame, equity=EQUITY)
    assert len(trades) > 200
    assert {t["side"] for t in trades} == {"long", "short"}
    assert {t["setup"] for t in trades} == {"MR", "TC"}
    assert {t["exit_reason"] for t in trades} >= {"stop", "target"}
    assert_trades_equal(result.trades, trades)
    assert_equity_equal(result.equity, equity)


def test_stdev_equals_reference_with_multipliers_params_and_costs(bars):
    multipliers = random_multipliers(sorted(set(bars["date"])))
    params = {"mr_arm_z": 1.0, "tc_trigger_z": 0.8, "atr_percentile_cap": 70.0,
              "min_rr_ratio": 2.0, "max_risk_per_trade": 0.02}  # fmt: skip
    result = run_backtest(bars, "stdev", params, equity=EQUITY, commission_bps=3,
                          slippage_bps=2, threshold_multipliers=multipliers)  # fmt: skip
    by_day = {
        row.date: (row.mr_arm, row.mr_trigger, row.tc_arm, row.tc_trigger)
        for row in multipliers.itertuples()
    }
    trades, equity = reference_stdev(bars, equity=EQUITY, commission_bps=3, slippage_bps=2,
                                     multipliers=by_day, **params)  # fmt: skip
    assert_trades_equal(result.trades, trades)
    assert_equity_equal(result.equity, equity)
    # The multipliers matter: without them the trades differ.
    assert not result.trades.equals(run_backtest(bars, "stdev", params, equity=EQUITY).trades)


def test_no_look_ahead():
    assert_no_look_ahead("stdev")


# ------------------------------------------------------------------------------------------------
# The state machine on hand-built bars: flat 99-101 bars (a 1.4 stop and 2.1 target from a fill
# near 100 are not touched), atr_14 = 1, ATR rank 50, an up-sloping EMA unless a row says so.
# ------------------------------------------------------------------------------------------------


def stdev_bars(rows: list[dict]) -> pd.DataFrame:
    base = {"atr_14": 1.0, "atr_pct_rank_252": 50.0, "ema_slope_20": 0.1, "zscore_20": 0.0}
    tail = {**base, "zscore_20": np.nan}  # two sessions to fill on, without signals
    return hand_bars([{**base, **row} for row in rows] + [tail, tail])


def stdev_trades(rows: list[dict], params=None, **kwargs) -> list[dict]:
    kwargs = {"equity": 10_000, "commission_bps": 0, "slippage_bps": 0, **kwargs}
    return run_backtest(stdev_bars(rows), "stdev", params, **kwargs).trades.to_dict("records")


def entries(trades: list[dict]) -> list[tuple]:
    return [(t["entry_date"], t["side"], t["setup"]) for t in trades]


def z(*values, slope=0.1) -> list[dict]:
    return [{"zscore_20": v, "ema_slope_20": slope} for v in values]


def test_mr_long_after_a_low_and_short_after_a_high():
    assert entries(stdev_trades(z(-1.5, -0.4, slope=-0.1))) == [(DAYS[2], "long", "MR")]
    assert entries(stdev_trades(z(1.5, 0.4))) == [(DAYS[2], "short", "MR")]


def test_mr_arm_persists_until_the_trigger_and_the_other_extreme_rearms_it():
    assert entries(stdev_trades(z(-1.5, -1.0, -0.9, -0.7, -0.5))) == [(DAYS[5], "long", "MR")]
    assert entries(stdev_trades(z(-1.5, 1.5, 0.3))) == [(DAYS[3], "short", "MR")]
    # A session with a NaN indicator changes nothing: the arm waits through it.
    assert entries(stdev_trades(z(-1.5, np.nan, -0.4))) == [(DAYS[3], "long", "MR")]


def test_tc_long_in_an_up_trend_wins_over_the_mr_short():
    # z = 2 with a rising EMA arms TC long and MR short; both trigger on the pull-back.
    assert entries(stdev_trades(z(2.0, 0.4))) == [(DAYS[2], "long", "TC")]
    assert entries(stdev_trades(z(-2.0, -0.4, slope=-0.1))) == [(DAYS[2], "short", "TC")]
    no_mr = {"mr_arm_z": 3.0}
    assert entries(stdev_trades(z(1.9, 1.0, 0.4), no_mr)) == [(DAYS[3], "long", "TC")]


def test_tc_disarms_when_the_slope_flips():
    rows = [*z(2.0), *z(1.0, slope=-0.1), *z(0.4)]
    assert stdev_trades(rows, {"mr_arm_z": 3.0}) == []
    # With MR on, the high armed it short, and it still triggers.
    assert entries(stdev_trades(rows)) == [(DAYS[3], "short", "MR")]
    # The other extreme disarms TC too (here against the trend, so nothing re-arms it).
    assert stdev_trades([*z(2.0), *z(-1.9), *z(0.4)], {"mr_arm_z": 3.0}) == []


def test_the_atr_cap_suppresses_a_trigger_and_returns_to_idle():
    calm, hot = {"atr_pct_rank_252": 50.0}, {"atr_pct_rank_252": 90.0}
    rows = z(-1.5, -0.4, -0.3)
    assert entries(stdev_trades(rows)) == [(DAYS[2], "long", "MR")]
    assert stdev_trades([rows[0], {**rows[1], **hot}, {**rows[2], **calm}]) == []
    assert entries(stdev_trades(rows, {"atr_percentile_cap": 90.0})) == [(DAYS[2], "long", "MR")]


def test_multipliers_apply_per_session():
    rows = z(1.3, 0.3)

    def multipliers(day, **values):
        return pd.DataFrame([{"date": DAYS[day], "mr_arm": 1.0, "mr_trigger": 1.0, "tc_arm": 1.0,
                              "tc_trigger": 1.0, "confidence": 0.5, "reasoning": "",
                              "source": "test", **values}])  # fmt: skip

    assert entries(stdev_trades(rows)) == [(DAYS[2], "short", "MR")]
    assert stdev_trades(rows, threshold_multipliers=multipliers(0, mr_arm=2.0)) == []
    assert len(stdev_trades(rows, threshold_multipliers=multipliers(1, mr_arm=2.0))) == 1
    late = z(1.5, 0.8)
    assert stdev_trades(late) == []
    assert len(stdev_trades(late, threshold_multipliers=multipliers(1, mr_trigger=2.0))) == 1
    # Every strategy validates the frame, even one that does not read it.
    with pytest.raises(ValueError, match="mr_arm"):
        run_backtest(stdev_bars(rows), "rsi_mean_reversion",
                     threshold_multipliers=multipliers(0, mr_arm=2.5))  # fmt: skip


def test_sizing_risks_one_percent_capped_by_the_sleeve():
    (trade,) = stdev_trades(z(-1.5, -0.4))
    assert trade["shares"] == math.floor(0.01 * 10_000 / 1.4)  # 71 shares risk 1.4 each
    assert trade["r_multiple"] == pytest.approx(trade["pnl"] / (71 * 1.4))
    tiny_atr = [{**row, "atr_14": 0.01} for row in z(-1.5, -0.4)]
    (trade,) = stdev_trades(tiny_atr, commission_bps=10)
    assert trade["shares"] == math.floor(10_000 / (100.0 * 1.001))  # the sleeve's equity


def day(open_, high, low, close) -> dict:
    return {"open": open_, "high": high, "low": low, "close": close}


@pytest.mark.parametrize(
    ("bar", "reason", "price"),
    [
        (day(99.0, 99.5, 98.0, 99.0), "stop", 100.0 - 1.4),  # reached intraday: at the stop
        (day(97.0, 99.0, 96.0, 98.0), "stop", 97.0),  # gapped through: at the open
        (day(100.0, 103.0, 98.0, 101.0), "stop", 100.0 - 1.4),  # both inside the bar: the stop
        (day(101.0, 102.5, 100.5, 102.0), "target", 100.0 + 2.1),
        (day(103.0, 104.0, 102.5, 103.0), "target", 103.0),  # gapped through the target
    ],
)
def test_long_stop_and_target_fills(bar, reason, price):
    rows = [*z(-1.5, -0.4, slope=-0.1), {"open": 100.0, "zscore_20": np.nan}, bar]
    (trade,) = stdev_trades(rows)
    assert (trade["entry_price"], trade["exit_date"]) == (100.0, DAYS[3])
    assert (trade["exit_reason"], trade["exit_price"]) == (reason, pytest.approx(price))


def test_short_fills_slippage_equity_and_a_stop_on_the_entry_bar():
    rows = [*z(1.5, 0.4), {**day(100.0, 100.5, 99.5, 99.5), "zscore_20": np.nan}]
    result = run_backtest(stdev_bars(rows), "stdev", equity=10_000, commission_bps=10,
                          slippage_bps=50)  # fmt: skip
    (trade,) = result.trades.to_dict("records")
    sold = 100.0 * (1 - 0.005)  # a short sale receives less
    shares = math.floor(0.01 * 10_000 / 1.4)
    assert trade["side"] == "short" and trade["entry_price"] == pytest.approx(sold)
    assert trade["shares"] == shares
    cash = 10_000 + shares * sold - shares * sold * 0.001  # the proceeds are credited
    assert result.equity[DAYS[2]] == pytest.approx(cash - shares * 99.5)
    # The next (flat 99-101) bar reaches the stop, 1.4 above the fill: covered there, no slippage.
    assert (trade["exit_date"], trade["exit_reason"]) == (DAYS[3], "stop")
    assert trade["exit_price"] == pytest.approx(sold + 1.4)
    assert trade["fees"] == pytest.approx(shares * (sold + sold + 1.4) * 0.001)
    assert trade["pnl"] == pytest.approx(-shares * 1.4 - trade["fees"])
    assert result.equity[DAYS[3]] == pytest.approx(10_000 + trade["pnl"])
    # A stop reached on the entry bar itself exits there (the range comes after the open).
    rows = [*z(1.5, 0.4), {**day(100.0, 102.0, 99.5, 101.0), "zscore_20": np.nan}]
    (trade,) = stdev_trades(rows)
    assert (trade["exit_date"], trade["exit_reason"]) == (DAYS[2], "stop")
    assert trade["exit_price"] == pytest.approx(101.4)
    assert trade["pnl"] == pytest.approx(-71 * 1.4)


def test_judging_resumes_at_the_close_of_the_exit_bar():
    exit_bar = {**day(99.0, 99.5, 98.0, 99.0), "zscore_20": -1.5, "ema_slope_20": -0.1}
    rows = [*z(-1.5, -0.4, slope=-0.1), {"zscore_20": -1.5, "ema_slope_20": -0.1}, exit_bar,
            *z(-0.4, slope=-0.1)]  # fmt: skip
    # The arm on the entry bar (in a trade) is ignored; the one on the exit bar counts.
    assert entries(stdev_trades(rows)) == [(DAYS[2], "long", "MR"), (DAYS[5], "long", "MR")]


def test_an_entry_clears_both_arms():
    # z = 2 arms TC long and MR short; TC triggers and enters; the MR arm is gone afterwards.
    rows = [*z(2.0, 0.4), {**day(97.0, 97.5, 96.0, 97.0), "zscore_20": 0.3}, *z(0.2)]
    trades = stdev_trades(rows)
    assert entries(trades) == [(DAYS[2], "long", "TC")]
    assert dt.date(2024, 1, 1) < trades[0]["exit_date"] == DAYS[3]
