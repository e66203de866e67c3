"""Trade validation: before a stdev signal becomes a trade, a judge (the LLM, in the assets) may
veto it. Off unless a judge is given.

The sleeves are path-dependent (a vetoed entry leaves the sleeve flat, so a later signal may now
trade), so the judge is asked in rounds: run the sleeves with the vetoes so far, hand the judge
every entry whose signal it has not judged yet, add its vetoes, run again; stop when a run brings
no unjudged entry. Each signal is judged at most once, so this ends within as many rounds as there
are signals (in practice a few). A vetoed signal is suppressed as the ATR cap suppresses one.

The judge gets SIGNAL_COLUMNS, one row per signal: the signal session's bar (the close at which
the tactic decided) and the entry it would fill (the next tradable open); it returns one bool per
row, True = veto. It keeps its own record of why.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from trading_assets.core.backtest.bars import Bars
from trading_assets.core.backtest.ledger import SETUP_MR, SETUP_TC, TradeRecords
from trading_assets.core.backtest.params import StdevParams
from trading_assets.core.backtest.result import LONG, SHORT, BacktestInputError
from trading_assets.core.backtest.sleeves import tradable_bars
from trading_assets.core.backtest.stdev import STDEV_COLUMNS, run_stdev_sleeves

SIGNAL_COLUMNS: tuple[str, ...] = (
    "symbol",
    "signal_date",
    "entry_date",
    "side",
    "setup",
    "close",
    *STDEV_COLUMNS,
)
TradeVeto = Callable[[pd.DataFrame], "np.ndarray | list[bool] | pd.Series"]
_SETUPS = {SETUP_MR: "MR", SETUP_TC: "TC"}


def vetoed_stdev_sleeves(
    bars: Bars,
    params: StdevParams,
    multipliers: np.ndarray,
    veto: TradeVeto,
    **costs: float,
) -> tuple[TradeRecords, np.ndarray]:
    """run_stdev_sleeves with ``veto`` asked about each entry (see the module docstring)."""
    vetoed = np.zeros(bars.n_rows, dtype=np.bool_)
    judged = np.zeros(bars.n_rows, dtype=np.bool_)
    signal_row = _signal_rows(bars)
    while True:
        records, sleeve_equity = run_stdev_sleeves(
            bars, params, multipliers, vetoed=vetoed, **costs
        )
        rows = signal_row[records.entry_row]
        new = ~judged[rows]
        if not new.any():
            return records, sleeve_equity
        signals, asked = _signals(bars, records, rows, new)
        verdict = np.asarray(veto(signals), dtype=object)
        if verdict.shape != (len(signals),) or not all(
            isinstance(v, bool | np.bool_) for v in verdict
        ):
            raise BacktestInputError(
                f"the trade veto must return one bool per signal ({len(signals)}), got {verdict!r}"
            )
        judged[asked] = True
        vetoed[asked[verdict.astype(bool)]] = True


def _signal_rows(bars: Bars) -> np.ndarray:
    """For each row, the tradable row of the same symbol before it (-1: none): the session whose
    close decided an entry that fills at this row's open."""
    tradable = tradable_bars(bars)
    previous = np.full(bars.n_rows, -1, dtype=np.int64)
    for k in range(bars.n_symbols):
        last = -1
        for i in range(bars.bounds[k], bars.bounds[k + 1]):
            previous[i] = last
            if tradable[i]:
                last = i
    return previous


def _signals(
    bars: Bars, records: TradeRecords, rows: np.ndarray, new: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """SIGNAL_COLUMNS of the new entries by signal_date, symbol; and their signal rows."""
    dates = bars.session_dates()
    signal, entry = rows[new], records.entry_row[new]
    frame = pd.DataFrame({
        "symbol": bars.symbols[bars.symbol_codes[signal]],
        "signal_date": dates[bars.date_codes[signal]],
        "entry_date": dates[bars.date_codes[entry]],
        "side": [LONG if s > 0 else SHORT for s in records.side[new]],
        "setup": [_SETUPS.get(int(s)) for s in records.setup[new]],
        "close": bars.column("close")[signal],
        **{c: bars.column(c)[signal] for c in STDEV_COLUMNS},
    })  # fmt: skip
    order = frame.sort_values(["signal_date", "symbol"], kind="stable").index.to_numpy()
    return frame.iloc[order].reset_index(drop=True), signal[order]
