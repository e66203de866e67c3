"""mark_to_market: the user's journal as a daily equity curve, by hand and against the journal."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.journal import match_round_trips
from trading_assets.core.positions import PositionsInputError, mark_to_market

D = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]


def closes(values: dict[str, list[float | None]]) -> pd.DataFrame:
    rows = [
        {"symbol": s, "date": d, "close": c}
        for s, series in values.items()
        for d, c in zip(D, series, strict=True)
        if c is not None
    ]
    return pd.DataFrame(rows)


def fills(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["date", "symbol", "side", "quantity", "price", "fees"])
    return frame.assign(line=range(2, len(frame) + 2))


def test_a_round_trip_and_an_open_lot_by_hand():
    trades = match_round_trips(
        fills(
            [
                (D[0], "AAA", "buy", 10, 100.0, 1.0),
                (D[2], "AAA", "sell", 10, 104.0, 1.0),
                (D[1], "BBB", "buy", 5, 50.0, 0.5),
            ]
        ),
        last_close={"BBB": 53.0},
    )
    marks = closes({"AAA": [101, 102, 104, 99, 98], "BBB": [49, 51, None, 52, 53]})
    equity = mark_to_market(trades, marks, 1_000.0)
    assert list(equity.index) == D
    expected = [
        1_000 + 10 * (101 - 100) - 2.0,  # AAA open: the row's fees (entry and exit) charged
        1_000 + 10 * (102 - 100) - 2.0 + 5 * (51 - 50) - 0.5,
        1_000 + 38.0 + 5 * (51 - 50) - 0.5,  # AAA sold: pnl 40 - 2; BBB no bar: last close
        1_000 + 38.0 + 5 * (52 - 50) - 0.5,
        1_000 + 38.0 + 5 * (53 - 50) - 0.5,
    ]
    np.testing.assert_allclose(equity.to_numpy(), expected, rtol=1e-15)
    # the last session's equity is the start plus every row's pnl (open rows marked at the last close)
    assert equity.iloc[-1] == pytest.approx(1_000 + trades["pnl"].sum(), rel=1e-15)


def test_a_short_row_gains_when_the_price_falls():
    trades = pd.DataFrame([{
        "symbol": "AAA", "side": "short", "entry_date": D[0], "entry_price": 100.0,
        "exit_date": None, "shares": 2, "fees": 0.0, "pnl": np.nan,
    }])  # fmt: skip
    equity = mark_to_market(trades, closes({"AAA": [100, 90, 95, 80, 100]}), 0.0)
    assert equity.tolist() == [0.0, 20.0, 10.0, 40.0, 0.0]


def test_empty_inputs_and_missing_columns():
    empty = match_round_trips(fills([]))
    assert mark_to_market(empty, closes({"AAA": [1, 2, 3, 4, 5]}), 100.0).empty
    with pytest.raises(PositionsInputError, match="closes frame lacks"):
        mark_to_market(empty, pd.DataFrame({"symbol": []}), 100.0)
