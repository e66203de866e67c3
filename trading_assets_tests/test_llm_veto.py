"""Trade validation (core.backtest.veto): a judge may veto each stdev signal before it becomes a
trade. A vetoed signal must be exactly an ATR-cap suppression of that signal session, so the
independent reference is the same backtest (and test_backtest_stdev's pure-Python reference_stdev)
on bars whose atr_pct_rank_252 is above the cap on the vetoed sessions."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest import run_backtest
from trading_assets.core.backtest.result import BacktestInputError
from trading_assets.core.backtest.veto import SIGNAL_COLUMNS
from trading_assets.llm.analyse import FALLBACK, OK
from trading_assets.llm.veto import APPROVED, VETOED
from trading_assets_tests.llm_server import answer, serve_llm
from trading_assets_tests.test_backtest import EQUITY, assert_trades_equal, real_bars
from trading_assets_tests.test_backtest_stdev import DAYS, reference_stdev, stdev_bars, z
from trading_assets_tests.test_market_analysis import GRAPH, build_daily, openai, query, resources

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


# --- the LLM as judge, through the stdev_trade_reviews asset ------------------------------------


def no_shorts(request):
    """The stub's judge: vetoes every short signal, approves the rest."""
    short = '"side": "short"' in request.user
    reasoning = "no shorts in this market" if short else "fits the trend"
    return answer(json.dumps({"veto": short, "reasoning": reasoning}), 300, 20)


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    return build_daily(tmp_path_factory.mktemp("reviews"))


@pytest.fixture
def db(daily, tmp_path):
    copy = tmp_path / "copy.duckdb"
    shutil.copy(daily, copy)
    return copy


def review(db, tmp_path, llm, enabled=True):
    from trading_assets.assets.backtests import backtests
    from trading_assets.assets.trade_review import stdev_trade_reviews

    return dg.materialize(
        [*GRAPH, backtests, stdev_trade_reviews],
        selection=[stdev_trade_reviews],
        resources={**resources(db, tmp_path / "reports"), "llm": llm},
        run_config={"ops": {"stdev_trade_reviews": {"config": {"enabled": enabled}}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_the_review_is_off_by_default_asks_nothing_and_keeps_the_stored_reviews(db, tmp_path):
    def stored():
        tables = set(query(db, "SELECT table_name FROM information_schema.tables")["table_name"])
        if "stdev_trade_reviews" not in tables:
            return None
        return query(db, "SELECT * FROM stdev_trade_reviews ORDER BY signal_date, symbol")

    with serve_llm(no_shorts) as server:
        result = review(db, tmp_path, openai(server), enabled=False)
        assert result.success and server.requests == []
        assert result.asset_materializations_for_node("stdev_trade_reviews") == []
        assert stored() is None  # nothing written

        assert review(db, tmp_path, openai(server)).success
        before = stored()
        asked = len(server.requests)
        # A portfolio run with the default config (off) afterwards: nothing asked, nothing lost.
        result = review(db, tmp_path, openai(server), enabled=False)
    assert result.success and len(server.requests) == asked
    assert result.asset_materializations_for_node("stdev_trade_reviews") == []
    assert len(before) > 10
    pd.testing.assert_frame_equal(stored(), before)


def test_the_llm_vetoes_signals_and_the_verdicts_are_stored_with_the_trades(db, tmp_path):
    with serve_llm(no_shorts) as server:
        server.queue(answer("approve it", 100, 5))  # the first signal: not JSON
        result = review(db, tmp_path, openai(server))
        asked = len(server.requests)
        rows = query(db, "SELECT * FROM stdev_trade_reviews ORDER BY signal_date, symbol")
        again = review(db, tmp_path, openai(server))
        asked_again = len(server.requests) - asked
    assert result.success and again.success
    assert len(rows) == asked > 10
    assert not rows.duplicated(["symbol", "signal_date"]).any()
    fallback = rows[rows["status"] == FALLBACK]
    assert len(fallback) == 1 and fallback["verdict"].iloc[0] == APPROVED
    assert fallback["fallback_reason"].iloc[0].startswith("invalid answer: malformed JSON")
    judged = rows[rows["status"] == OK]
    assert set(judged.loc[judged["side"] == "short", "verdict"]) == {VETOED}
    assert set(judged.loc[judged["side"] == "long", "verdict"]) == {APPROVED}
    assert set(judged.loc[judged["verdict"] == VETOED, "reasoning"]) == {"no shorts in this market"}
    # a vetoed signal was never traded; a traded one carries its trade
    assert not rows.loc[rows["verdict"] == VETOED, "traded"].any()
    traded = rows[rows["traded"]]
    assert len(traded) and traded[["entry_price", "shares", "pnl"]].notna().all().all()
    assert (traded["verdict"] == APPROVED).all()
    meta = result.asset_materializations_for_node("stdev_trade_reviews")[0].metadata
    assert meta["vetoed"].value == (rows["verdict"] == VETOED).sum() > 0
    assert meta["trades_with_veto"].value == len(traded)
    assert meta["trades_with_veto"].value != meta["trades_without_veto"].value
    assert meta["input_tokens"].value == 100 + 300 * (asked - 1)
    # the second run reuses every ok judgement and asks the fallback again
    assert asked_again == 1
    meta = again.asset_materializations_for_node("stdev_trade_reviews")[0].metadata
    assert meta["cache_hits"].value == asked - 1
    stored = query(db, "SELECT * FROM stdev_trade_reviews ORDER BY signal_date, symbol")
    assert len(stored) == len(rows) and set(stored["status"]) == {OK}
