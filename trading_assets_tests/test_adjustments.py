"""Changed history: stored bars against the same bars fetched again."""

import datetime as dt

import numpy as np
import pandas as pd

from trading_assets.core.adjustments import (
    ADJUSTMENT,
    REVISION,
    find_history_changes,
    restatement_plan,
)
from trading_assets_tests.conftest import shared_prices


def overlap():
    return shared_prices(["AAPL", "MSFT", "^VIX"], "2024-03-20", "2024-03-28")


def test_identical_bars_and_float_noise_are_no_change():
    stored = overlap()
    fresh = stored.copy()
    fresh[["open", "high", "low", "close"]] *= 1 + 1e-12
    assert find_history_changes(stored, fresh).empty


def test_a_split_is_an_adjustment_with_its_factor():
    stored = overlap()
    fresh = stored.copy()
    aapl = fresh.symbol == "AAPL"
    fresh.loc[aapl, ["open", "high", "low", "close"]] /= 4
    fresh.loc[aapl, "volume"] *= 4
    changes = find_history_changes(stored, fresh)
    assert changes.symbol.tolist() == ["AAPL"] and changes.kind.item() == ADJUSTMENT
    assert np.isclose(changes.factor.item(), 0.25)
    assert changes.sessions_changed.item() == changes.sessions_compared.item() == 7


def test_a_dividend_scales_only_the_bars_before_the_ex_date_and_is_an_adjustment():
    stored = overlap()
    fresh = stored.copy()
    before = (fresh.symbol == "MSFT") & (fresh.date < dt.date(2024, 3, 26))
    fresh.loc[before, ["open", "high", "low", "close"]] *= 0.995
    changes = find_history_changes(stored, fresh)
    assert changes.kind.item() == ADJUSTMENT and np.isclose(changes.factor.item(), 0.995)


def test_a_late_correction_of_the_newest_bar_is_a_revision_from_that_bar():
    stored = overlap()
    fresh = stored.copy()
    last = (fresh.symbol == "AAPL") & (fresh.date == fresh.date.max())
    fresh.loc[last, "volume"] += 12_345
    changes = find_history_changes(stored, fresh)
    assert changes.kind.item() == REVISION and changes.first_changed.item() == fresh.date.max()


def test_nan_volumes_on_both_sides_are_equal_and_empty_inputs_are_no_change():
    stored = overlap()
    assert stored.loc[stored.symbol == "^VIX", "volume"].isna().all()
    assert find_history_changes(stored, stored.copy()).empty
    assert find_history_changes(stored.iloc[:0], stored).empty


def test_restatement_plan_separates_adjusted_symbols_from_revised_sessions():
    d = dt.date
    revisions = pd.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "KO"],
            "kind": [ADJUSTMENT, REVISION, "verdict"],
            "restate_from": [d(2000, 1, 3), d(2024, 3, 27), d(2024, 3, 26)],
        }
    )
    assert restatement_plan(revisions, d(2024, 3, 28)) == (["AAPL"], d(2024, 3, 26))
    assert restatement_plan(revisions.iloc[:0], d(2024, 3, 28)) == ([], None)
    assert restatement_plan(None, d(2024, 3, 28)) == ([], None)
