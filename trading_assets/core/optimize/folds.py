"""Walk-forward folds: optimise on a training window, evaluate on the next unseen window, roll on.

Windows count sessions (the sorted dates of the bars), not calendar days. Fold k trains on
``train_sessions`` sessions and tests on the ``test_sessions`` right after them; fold k + 1 starts
``test_sessions`` later, so the test windows tile the history without gap or overlap and every
test session is one no fold's search saw before it was tested. ``anchored`` keeps every training
window starting at the first session (an expanding window) instead of rolling its start forward.
Sessions after the last whole test window are left untested (``WalkForward.untested``).

Indicators in a window were computed over the whole history by the indicators asset: each is
causal (a session's value reads only that session and earlier), so the first sessions of a test
window see the end of the training window's prices, as a trader on that day would, and no later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trading_assets.core.optimize.spaces import OptimizerConfigError

# A Sharpe ratio of fewer returns than this says little; the windows must hold at least these.
MIN_TRAIN_SESSIONS = 20
MIN_TEST_SESSIONS = 5


@dataclass(frozen=True)
class Fold:
    """Session positions [train_start, train_stop) and [test_start, test_stop) (stop exclusive)."""

    index: int
    train_start: int
    train_stop: int
    test_start: int
    test_stop: int


@dataclass(frozen=True)
class WalkForward:
    folds: tuple[Fold, ...]
    untested: int  # sessions after the last test window


def check_windows(train_sessions: Any, test_sessions: Any) -> None:
    for name, value, least in (
        ("train_sessions", train_sessions, MIN_TRAIN_SESSIONS),
        ("test_sessions", test_sessions, MIN_TEST_SESSIONS),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptimizerConfigError(f"{name} must be a whole number of sessions, got {value!r}")
        if value < least:
            raise OptimizerConfigError(f"{name}={value} is below the minimum of {least} sessions")


def walk_forward(
    sessions: Sequence[Any], train_sessions: int, test_sessions: int, *, anchored: bool = False
) -> WalkForward:
    """The folds over ``sessions`` (sorted, distinct). Raises OptimizerConfigError for windows
    below the minimums or when the sessions cannot hold one training plus one test window."""
    check_windows(train_sessions, test_sessions)
    n = len(sessions)
    if n < train_sessions + test_sessions:
        raise OptimizerConfigError(
            f"{n} sessions cannot hold one fold of train_sessions={train_sessions} + "
            f"test_sessions={test_sessions}"
        )
    folds = []
    test_start = train_sessions
    while test_start + test_sessions <= n:
        folds.append(
            Fold(
                index=len(folds),
                train_start=0 if anchored else test_start - train_sessions,
                train_stop=test_start,
                test_start=test_start,
                test_stop=test_start + test_sessions,
            )
        )
        test_start += test_sessions
    return WalkForward(folds=tuple(folds), untested=n - folds[-1].test_stop)
