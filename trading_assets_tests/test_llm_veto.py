"""Trade validation (core.backtest.veto): a judge may veto each stdev signal before it becomes a
trade. A vetoed signal must be exactly an ATR-cap suppression of that signal session, so the
independent reference is the same backtest (and test_backtest_stdev's pure-Python reference_stdev)
on bars whose atr_pct_rank_252 is above the cap on the vetoed sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest import run_backtest
from trading_assets.core.backtest.result import BacktestInputError
from trading_assets.core.backtest.veto import SIGNAL_COLUMNS
from trading_assets_tests.test_backtest import EQUITY, assert_trades_equal, real_bars
from trading_assets_tests.test_backtest_stdev import DAYS, reference_stdev, stdev_bars, z

ABOVE_CAP = 100.0  # atr_pct_rank_252 above the default cap (85): the ATR cap suppresses


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return real_bars()


class Judge:
    """Vetoes the signals ``rule`` picks; remembers every signal it was shown, per call."""

    def __init__(self, rule):
        self.rule = rule
        self.calls: list[pd.DataFrame] = []

    def __call__(self, signals: pd.DataFrame) -> np.ndarray:
        self.calls.append(signals)
        return np.array([bool(self.rule(row)) for row in signals.to_dict("records")], dtype=bool)

    def shown(self) -> pd.DataFrame:
        return pd.concat(self.calls, ignore_index=True)

    def vetoed(self) -> pd.DataFrame:
        shown = self.shown()
        return shown[[bool(self.rule(r)) for r in shown.to_dict("records")]]


def test_approving_everything_changes_nothing_and_asks_once(bars):
    judge = Judge(lambda _: False)
    plain = run_backtest(bars, "stdev", equity=EQUITY)
    judged = run_backtest(bars, "stdev", equity=EQUITY, trade_veto=judge)
    pd.testing.assert_frame_equal(judged.trades, plain.trades)
    pd.testing.assert_series_equal(judged.equity, plain.equity)
    [signals] = judge.calls
    assert list(signals.columns) == list(SIGNAL_COLUMNS)
    assert len(signals) == len(plain.trades)
    # each signal is the tradable session before its entry, with the trade's side and setup
    merged = signals.merge(plain.trades, on=["symbol", "entry_date", "side", "setup"])
    assert len(merged) == len(plain.trades)
    assert (merged["signal_date"] < merged["entry_date"]).all()


def test_vetoing_everything_leaves_no_trade_and_judges_each_signal_once(bars):
    judge = Judge(lambda _: True)
    result = run_backtest(bars, "stdev", equity=EQUITY, trade_veto=judge)
    assert result.trades.empty
    assert (result.equity == EQUITY).all()
    shown = judge.shown()
    assert len(judge.calls) > 1  # a vetoed entry frees the sleeve: later signals come up
    assert not shown.duplicated(["symbol", "signal_date"]).any()


def test_a_veto_is_an_atr_cap_suppression_of_its_signal_session(bars):
    # veto the signals of odd days of the month: a rule the judge cannot game
    judge = Judge(lambda row: row["signal_date"].day % 2 == 1)
    judged = run_backtest(bars, "stdev", equity=EQUITY, trade_veto=judge)
    vetoed = judge.vetoed()
    assert 0 < len(vetoed) < len(judge.shown())
    capped = bars.copy()
    hit = capped.set_index(["symbol", "date"]).index.isin(
        list(zip(vetoed["symbol"], vetoed["signal_date"], strict=True))
    )
    assert hit.sum() == len(vetoed)
    capped.loc[hit, "atr_pct_rank_252"] = ABOVE_CAP
    expected = run_backtest(capped, "stdev", equity=EQUITY)
    pd.testing.assert_frame_equal(judged.trades, expected.trades)
    pd.testing.assert_series_equal(judged.equity, expected.equity)
    trades, _ = reference_stdev(capped, equity=EQUITY)  # the pure-Python reference
    assert_trades_equal(judged.trades, trades)
    # no trade of the final run comes from a vetoed signal
    kept = judge.shown().merge(judged.trades, on=["symbol", "entry_date", "side", "setup"])
    assert not (kept["signal_date"].map(lambda d: d.day % 2 == 1)).any()


def test_a_vetoed_signal_uses_up_its_arm_as_the_atr_cap_does():
    rows = z(-1.5, -0.4, -0.3)
    plain = run_backtest(stdev_bars(rows), "stdev", equity=10_000)
    assert list(plain.trades["entry_date"]) == [DAYS[2]]
    judge = Judge(lambda row: row["signal_date"] == DAYS[1])
    vetoed = run_backtest(stdev_bars(rows), "stdev", equity=10_000, trade_veto=judge)
    assert vetoed.trades.empty  # -0.3 the next session does not trigger again
    [signals] = judge.calls
    assert signals[["signal_date", "entry_date", "side", "setup"]].values.tolist() == [
        [DAYS[1], DAYS[2], "long", "MR"]
    ]
    assert signals["zscore_20"].tolist() == [-0.4]


@pytest.mark.parametrize("answer", [[True, False], ["yes"], np.array([1])])
def test_a_judge_answering_anything_but_one_bool_per_signal_is_refused(answer):
    with pytest.raises(BacktestInputError, match="one bool per signal"):
        run_backtest(stdev_bars(z(-1.5, -0.4)), "stdev", trade_veto=lambda _: answer)


def test_other_strategies_ignore_the_veto(bars):
    judge = Judge(lambda _: True)
    plain = run_backtest(bars, "rsi_mean_reversion", equity=EQUITY)
    judged = run_backtest(bars, "rsi_mean_reversion", equity=EQUITY, trade_veto=judge)
    pd.testing.assert_frame_equal(judged.trades, plain.trades)
    assert judge.calls == []
