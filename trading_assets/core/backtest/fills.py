"""The fill and cost rules of result.py as numba functions every strategy kernel calls.

``side`` is +1 for a long position and -1 for a short one. Slippage and commission are rates
(bps / 10,000: ``bps_rate``). Market orders (a signal at the close of t, filled at the next bar's
open) pay slippage against the trader; stop and target orders fill at their price, or at the open
when the bar opened beyond it, with no slippage beyond that gap. Commission is charged on the
traded notional of each side.

Exit-reason codes for the kernels' trade records (ledger.py turns them into labels).
"""

from __future__ import annotations

import math
import numbers

import numba

from trading_assets.core.backtest.result import BacktestInputError

BPS = 1e-4  # one basis point

# Kernel codes of exit_reason (0: the trade is still open at the last bar). watchlist_momentum
# names its two scale-out targets and its sma_50 trail exit.
OPEN, EXIT_SIGNAL, EXIT_STOP, EXIT_TARGET = 0, 1, 2, 3
EXIT_TARGET_1, EXIT_TARGET_2, EXIT_TRAIL = 4, 5, 6


def check_equity(equity: object) -> None:
    """BacktestInputError unless ``equity`` is a finite number > 0 (numpy scalars too, not bool)."""
    if (
        isinstance(equity, bool)
        or not isinstance(equity, numbers.Real)
        or not math.isfinite(equity)
        or equity <= 0
    ):
        raise BacktestInputError(f"equity must be a finite number > 0, got {equity!r}")


def bps_rate(bps: float, what: str) -> float:
    """``bps`` basis points as a rate; BacktestInputError unless a finite number >= 0."""
    if isinstance(bps, bool) or not isinstance(bps, numbers.Real) or not math.isfinite(bps):
        raise BacktestInputError(f"{what} must be a finite number of basis points, got {bps!r}")
    if bps < 0:
        raise BacktestInputError(f"{what} must be >= 0 basis points, got {bps!r}")
    return float(bps) * BPS


@numba.njit(cache=True)
def entry_fill(open_price, side, slippage):
    """Opening at the open: a buy (long) pays more, a short sale receives less."""
    return open_price * (1.0 + side * slippage)


@numba.njit(cache=True)
def exit_fill(open_price, side, slippage):
    """Closing at the open: selling a long receives less, covering a short pays more."""
    return open_price * (1.0 - side * slippage)


@numba.njit(cache=True)
def commission(shares, price, rate):
    """Commission on the notional of one side of a trade."""
    return shares * price * rate


@numba.njit(cache=True)
def affordable_shares(cash, price, rate):
    """Whole shares whose notional plus commission fits in ``cash``: floor(cash / (price (1 + c)))."""
    if not (cash > 0.0 and price > 0.0):
        return 0
    return int(math.floor(cash / (price * (1.0 + rate))))


@numba.njit(cache=True)
def stop_or_target(open_price, high, low, stop, target, side):
    """(exit code, fill price) of a position with a stop and a target over one bar, or (OPEN, nan).

    An open beyond the stop (or the target) fills there at the open: the gap is known to come
    first. Otherwise a range that reaches the stop fills at the stop, even when it also reaches
    the target (the path inside the bar is unknown: assume the worse), else at the target.
    Pass target = NaN for a stop alone (NaN compares false, so it is never reached).
    """
    if side > 0:
        if open_price <= stop:
            return EXIT_STOP, open_price
        if open_price >= target:
            return EXIT_TARGET, open_price
        if low <= stop:
            return EXIT_STOP, stop
        if high >= target:
            return EXIT_TARGET, target
    else:
        if open_price >= stop:
            return EXIT_STOP, open_price
        if open_price <= target:
            return EXIT_TARGET, open_price
        if high >= stop:
            return EXIT_STOP, stop
        if low <= target:
            return EXIT_TARGET, target
    return OPEN, math.nan
