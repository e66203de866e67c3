"""Quarantine verdicts: bar rules, spike-and-revert against the last clean close, and the promise
that judging bars as they arrive gives what judging the whole history at once gives."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.quarantine import (
    BAD_TICK,
    QUARANTINE_COLUMN,
    SPIKE_UNCONFIRMED,
    close_is_usable,
    judge_bars,
)
from trading_assets_tests.conftest import shared_prices

D = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(40)]


def closes(series: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(s, D[i], c, c, c, c, 1.0) for s, cs in series.items() for i, c in enumerate(cs)]
    return pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])


def verdicts(frame: pd.DataFrame) -> dict[tuple[str, int], str]:
    q = judge_bars(frame)
    return {
        (s, D.index(d)): r
        for s, d, r in zip(frame.symbol, frame.date, q, strict=True)
        if pd.notna(r)
    }


def test_spike_that_reverts_is_a_bad_tick_a_move_that_holds_is_not():
    frame = closes(
        {
            "SPIKE": [10, 10, 55, 10.5, 10],
            "DROP": [10, 10, 1.9, 10, 10],
            "REAL": [10, 10, 55, 56, 57],
            "EDGE": [10, 10, 10, 10, 60],
            "CALM": [10, 11, 12, 11, 10],
        }
    )
    assert verdicts(frame) == {
        ("SPIKE", 2): BAD_TICK,
        ("DROP", 2): BAD_TICK,
        ("EDGE", 4): SPIKE_UNCONFIRMED,
    }


def test_the_bar_after_a_bad_tick_is_judged_against_the_last_clean_close():
    # 10 -> 60 (bad) -> 10: the return to 10 is no spike, although it is /6 against the bad bar.
    assert verdicts(closes({"A": [10, 10, 60, 10]})) == {("A", 2): BAD_TICK}
    # ... also when the return is the newest bar: it must not become 'spike_unconfirmed'.
    assert verdicts(closes({"A": [10, 10, 60, 10.2, 10.1]})) == {("A", 2): BAD_TICK}


def test_ohlc_violations_are_quarantined_and_never_serve_as_reference():
    frame = closes({"A": [10, 10, 10, 10]})
    frame.loc[1, "low"] = 11  # low above open/close/high
    got = judge_bars(frame)
    assert got.iloc[1] == "low>open,low>close,low>high" and got.drop(index=1).isna().all()


def test_empty_frame_gives_empty_verdicts():
    empty = closes({})
    assert judge_bars(empty).empty


def incremental(frame: pd.DataFrame) -> pd.Series:
    """Judge as daily runs do: each day the stored verdicts are final except each symbol's newest."""
    stored = frame.iloc[:0].assign(**{QUARANTINE_COLUMN: pd.Series(dtype=object)})
    for day in sorted(frame.date.unique()):
        today = frame[frame.date == day].assign(**{QUARANTINE_COLUMN: None})
        both = pd.concat([stored, today], ignore_index=True)
        newest = stored.groupby("symbol")["date"].transform("max") if len(stored) else None
        final = pd.Series(False, index=both.index)
        if newest is not None:
            final.iloc[: len(stored)] = (stored["date"] < newest).to_numpy()
        both[QUARANTINE_COLUMN] = judge_bars(both, final=final)
        stored = both
    return stored.set_index(["symbol", "date"])[QUARANTINE_COLUMN]


@pytest.mark.parametrize("seed", range(5))
def test_daily_judgement_equals_the_backfill_judgement(seed):
    rng = np.random.default_rng(seed)
    series = {}
    for s in "ABCD":
        c = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 30)))
        for i in rng.choice(np.arange(2, 30), size=4, replace=False):
            c[i] *= rng.choice([6.0, 0.15, 8.0])  # spikes; some revert, some (adjacent) do not
        series[s] = list(c)
    frame = closes(series)
    whole = judge_bars(frame)
    whole.index = pd.MultiIndex.from_frame(frame[["symbol", "date"]])
    pd.testing.assert_series_equal(
        incremental(frame).sort_index(), whole.sort_index(), check_names=False
    )
    assert whole.notna().any()  # the planted spikes were found


def test_real_shared_history_quarantines_exactly_the_five_known_bars():
    real = shared_prices(["^VIX", "HUBB", "AAPL", "DHR", "NVDA"])  # DHR's spin-off +61 % is real
    q = judge_bars(real)
    bad = real[q.notna()]
    assert set(zip(bad.symbol, bad.date.astype(str), strict=True)) == {
        ("^VIX", "2002-09-11"),
        ("^VIX", "2004-10-26"),
        ("^VIX", "2004-11-08"),
        ("^VIX", "2006-02-08"),
        ("HUBB", "2021-05-05"),
    }
    # ^VIX's faults are its opens: the close still feeds the market environment.
    assert close_is_usable(q[bad.index][bad.symbol == "^VIX"]).all()
    assert not close_is_usable(
        pd.Series([BAD_TICK, "close>high", SPIKE_UNCONFIRMED, "price<=0"])
    ).any()
