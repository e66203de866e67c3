"""The user's trades file: every bad row refused by line, all at once; fills matched FIFO."""

from __future__ import annotations

import datetime as dt
import math

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from trading_assets.core.backtest.result import TRADE_COLUMNS
from trading_assets.core.journal import (
    FILL_COLUMNS,
    TradeFileError,
    match_round_trips,
    read_trade_file,
    read_user_trades,
)
from trading_assets.sources.sample import SAMPLE_DIR, SAMPLE_PRICES, SAMPLE_SYMBOLS

HEADER = "date,symbol,side,quantity,price,fees\n"
UNIVERSE = ("AAPL", "MSFT", "BRK-B", "SPY")
SESSIONS = frozenset(
    d.date() for d in xcals.get_calendar("XNYS").sessions_in_range("2024-01-02", "2025-12-31")
)
EXAMPLE_TRADES = SAMPLE_DIR / "example_trades.csv"


def write(tmp_path, body: str, header: str = HEADER, name: str = "trades.csv"):
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def read(path):
    return read_trade_file(path, symbols=UNIVERSE, sessions=SESSIONS)


def rejected(path) -> TradeFileError:
    with pytest.raises(TradeFileError) as info:
        read(path)
    assert info.value.path == path
    return info.value


def trades_of(tmp_path, body: str, last_close=None) -> pd.DataFrame:
    return match_round_trips(read(write(tmp_path, body)), last_close)


# --- the bundled example -------------------------------------------------------------------------


def test_bundled_example_reads_against_the_bundled_sample():
    prices = pd.read_parquet(SAMPLE_PRICES, columns=["symbol", "date", "close"])
    sessions = set(pd.to_datetime(prices["date"]).dt.date)
    last = prices[prices["date"] == prices["date"].max()].set_index("symbol")["close"]
    trades = read_user_trades(
        EXAMPLE_TRADES, symbols=SAMPLE_SYMBOLS, sessions=sessions, last_close=last.to_dict()
    )
    fills = read_trade_file(EXAMPLE_TRADES, symbols=SAMPLE_SYMBOLS, sessions=sessions)
    assert list(trades.columns) == list(TRADE_COLUMNS)
    assert trades["fees"].sum() == pytest.approx(fills["fees"].sum())
    still_open = trades[trades["exit_date"].isna()]
    assert dict(zip(still_open["symbol"], still_open["shares"], strict=True)) == {
        "AAPL": 20.0,
        "BRK-B": 5.0,
    }
    assert still_open["pnl"].notna().all()  # marked at the sample's last close
    # The example's prices are real fills: inside the sample's bar of that day.
    bars = pd.read_parquet(SAMPLE_PRICES).assign(date=lambda f: pd.to_datetime(f["date"]).dt.date)
    bars = bars.set_index(["symbol", "date"])
    for row in fills.itertuples():
        bar = bars.loc[(row.symbol, row.date)]
        assert bar["low"] <= row.price <= bar["high"], row


# --- what a good file may look like --------------------------------------------------------------


def test_fills_in_file_order_with_their_physical_lines(tmp_path):
    path = write(
        tmp_path,
        "2024-03-04,AAPL,buy,100,175.10,1.00\n"
        "\n"
        "2024-03-05,MSFT,buy,10,400,\n"
        ",,,,,\n"
        "2024-03-04,AAPL,sell,40,176.5,0.4\n",
    )
    fills = read(path)
    assert list(fills.columns) == list(FILL_COLUMNS)
    assert fills["line"].tolist() == [2, 4, 6]
    assert fills["date"].tolist() == [dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 4)]
    assert fills["side"].tolist() == ["buy", "buy", "sell"]
    assert fills["fees"].tolist() == [1.0, 0.0, 0.4]  # blank fees are 0
    assert fills.dtypes[["quantity", "price", "fees"]].eq("float64").all()


def test_tolerated_forms(tmp_path):
    """BOM, CRLF, header case/spaces/order, extra columns, any-case side, lower-case symbol, quotes."""
    # the header names the columns: here "symbol" comes first, and a notes column rides along
    header = "\ufeff Symbol ,DATE,Side,Quantity,Price,Fees,notes\r\n"
    path = tmp_path / "trades.csv"
    path.write_bytes(
        (
            header
            + "AAPL,2024-03-04,BUY,1.5,175.10,1,first\r\n"
            + " brk-b ,2024-03-05,Buy,0.5,420,0,\r\n"
            + 'aapl,2024-03-06,SELL,0.5,"176",0.25,"two\r\nlines"\r\n'
            + "AAPL,2024-03-07,sell,1,177,,\r\n"
        ).encode("utf-8")
    )
    fills = read(path)
    assert fills["symbol"].tolist() == ["AAPL", "BRK-B", "AAPL", "AAPL"]
    assert fills["side"].tolist() == ["buy", "buy", "sell", "sell"]
    assert fills["quantity"].tolist() == [1.5, 0.5, 0.5, 1.0]
    # the quoted note spans lines 4-5, so the last fill is on physical line 6
    assert fills["line"].tolist() == [2, 3, 4, 6]


def test_identical_lines_are_two_fills(tmp_path):
    trades = trades_of(
        tmp_path,
        "2024-03-04,AAPL,buy,100,175,1\n2024-03-04,AAPL,buy,100,175,1\n"
        "2024-03-08,AAPL,sell,200,180,2\n",
    )
    assert trades["shares"].tolist() == [100.0, 100.0]
    assert trades["pnl"].tolist() == pytest.approx([498.0, 498.0])


def test_fractional_shares_net_to_exactly_zero(tmp_path):
    # 0.3 - 0.1 - 0.2 is not 0 in floats; the position check and matching must still see flat.
    trades = trades_of(
        tmp_path,
        "2024-03-04,AAPL,buy,0.3,100,0\n"
        "2024-03-05,AAPL,sell,0.1,110,0\n"
        "2024-03-06,AAPL,sell,0.2,120,0\n",
    )
    assert trades["shares"].tolist() == [0.1, 0.2]
    assert trades["exit_date"].notna().all()


def test_newest_first_file_is_replayed_by_date(tmp_path):
    trades = trades_of(tmp_path, "2024-03-08,AAPL,sell,100,180,1\n2024-03-04,AAPL,buy,100,175,1\n")
    assert trades[["entry_date", "exit_date"]].values.tolist() == [
        [dt.date(2024, 3, 4), dt.date(2024, 3, 8)]
    ]


def test_same_day_buy_then_sell_in_file_order(tmp_path):
    trades = trades_of(tmp_path, "2024-03-04,AAPL,buy,100,175,0\n2024-03-04,AAPL,sell,100,176,0\n")
    assert trades["pnl"].tolist() == [100.0]
    problem = rejected(
        write(tmp_path, "2024-03-04,AAPL,sell,100,176,0\n2024-03-04,AAPL,buy,100,175,0\n")
    )
    assert [line for line, _ in problem.problems] == [2]


# --- each bad row names its line -----------------------------------------------------------------

GOOD_BUY = "2024-03-04,AAPL,buy,100,175,1\n"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2024-03-05,TSLA,buy,10,200,0", "symbol TSLA is not in the universe"),
        ("2024-03-05,AA PL,buy,10,200,0", "is not a valid ticker"),
        ("2024-03-05,,buy,10,200,0", "is not a valid ticker"),
        ("2024-03-05,MSFT,buy,0,400,0", "quantity 0 is not positive"),
        ("2024-03-05,MSFT,buy,-5,400,0", "quantity -5 is not positive"),
        ("2024-03-05,MSFT,buy,10,0,0", "price 0 is not positive"),
        ("2024-03-05,MSFT,buy,10,-1.5,0", "price -1.5 is not positive"),
        ("2024-03-05,MSFT,buy,10,,0", "price is missing"),
        ("2024-03-05,MSFT,buy,ten,400,0", "quantity 'ten' is not a number"),
        ("2024-03-05,MSFT,buy,1e3,400,0", "quantity '1e3' is not a number"),
        ("2024-03-05,MSFT,buy,nan,400,0", "quantity 'nan' is not a number"),
        ("2024-03-05,MSFT,buy,10,$400,0", "price '$400' is not a number"),
        ("2024-03-05,MSFT,buy,10,400,-1", "fees -1 are negative"),
        ("2024-03-05,MSFT,buy,10,400,abc", "fees 'abc' is not a number"),
        ("2024/03/05,MSFT,buy,10,400,0", "date '2024/03/05' is not a YYYY-MM-DD date"),
        ("03/05/2024,MSFT,buy,10,400,0", "date '03/05/2024' is not a YYYY-MM-DD date"),
        ("2024-03-05T10:00,MSFT,buy,10,400,0", "is not a YYYY-MM-DD date"),
        ("2024-02-30,MSFT,buy,10,400,0", "date '2024-02-30' is not a calendar date"),
        ("2024-03-09,MSFT,buy,10,400,0", "date 2024-03-09 (Saturday) is not a trading session"),
        ("2024-07-04,MSFT,buy,10,400,0", "date 2024-07-04 (Thursday) is not a trading session"),
        ("2026-03-04,MSFT,buy,10,400,0", "is after the last session known, 2025-12-31"),
        ("2023-12-29,MSFT,buy,10,400,0", "is before the first session known, 2024-01-02"),
        ("2024-03-05,MSFT,buy,１０,400,0", "quantity '１０' is not a number"),
        ("2024-03-05,MSFT,short,10,400,0", "side 'short' is neither buy nor sell"),
        ("2024-03-05,MSFT,,10,400,0", "side '' is neither buy nor sell"),
        ("2024-03-05,MSFT,buy,10,400", "expected 6 fields as the header, got 5"),
        ("2024-03-05,MSFT,buy,10,400,0,extra", "expected 6 fields as the header, got 7"),
        ("2024-03-05;MSFT;buy;10;400;0", "expected 6 fields as the header, got 1"),
        ("2024-03-05,AAPL,sell,101,180,0", "sell of 101 AAPL on 2024-03-05 exceeds the 100 shares"),
    ],
)
def test_bad_row_is_refused_naming_its_line(tmp_path, row, expected):
    # a good row on each side (the one after is dated later, so it covers no earlier sell)
    path = write(tmp_path, GOOD_BUY + "\n" + row + "\n" + "2024-03-08,AAPL,buy,100,175,1\n")
    error = rejected(path)
    assert len(error.problems) == 1, error.problems
    line, message = error.problems[0]
    assert line == 4
    assert expected in message
    assert f"line 4: {message}" in str(error)
    assert str(path) in str(error)


def test_sell_before_any_buy(tmp_path):
    error = rejected(write(tmp_path, "2024-03-04,AAPL,sell,10,175,0\n" + GOOD_BUY))
    assert error.problems == [
        (
            2,
            "sell of 10 AAPL on 2024-03-04 exceeds the 0 shares open then "
            "(fills are replayed by date, then file order)",
        )
    ]


def test_sell_beyond_what_partial_sells_left(tmp_path):
    error = rejected(
        write(
            tmp_path,
            "2024-03-04,AAPL,buy,100,175,0\n"
            "2024-03-05,AAPL,sell,60,176,0\n"
            "2024-03-06,AAPL,sell,30,177,0\n"
            "2024-03-07,AAPL,sell,20,178,0\n"  # 10 left
            "2024-03-08,AAPL,sell,10,179,0\n",  # judged without line 5's refused sell: fine
        )
    )
    assert [(line, "exceeds the 10 shares" in m) for line, m in error.problems] == [(5, True)]


def test_other_symbols_position_does_not_cover_a_sell(tmp_path):
    error = rejected(write(tmp_path, GOOD_BUY + "2024-03-05,MSFT,sell,10,400,0\n"))
    assert error.problems[0][0] == 3 and "exceeds the 0 shares" in error.problems[0][1]


def test_every_bad_row_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        GOOD_BUY  # 2
        + "2024-07-04,AAPL,buy,10,175,0\n"  # 3: holiday
        + "2024-03-05,TSLA,buy,0,-1,0\n"  # 4: three problems
        + GOOD_BUY  # 5
        + "garbage\n"  # 6
        + "2024-03-06,MSFT,sell,5,400,0\n"  # 7: nothing open
        + "2024-03-07,AAPL,sell,200,180,0\n",  # 8: 200 open: fine
    )
    error = rejected(path)
    assert [line for line, _ in error.problems] == [3, 4, 4, 4, 6, 7]
    text = str(error)
    assert "6 problems" in text and "nothing stored" in text
    for line in (3, 4, 6, 7):
        assert f"line {line}:" in text


def test_a_refused_buy_does_not_make_later_sells_look_oversold(tmp_path):
    # Line 2's quantity is unreadable: AAPL's position is unknown, so line 3 is not judged yet.
    error = rejected(
        write(tmp_path, "2024-03-04,AAPL,buy,1O0,175,0\n2024-03-05,AAPL,sell,100,176,0\n")
    )
    assert [line for line, _ in error.problems] == [2]
    # A bad price does not move the position: the sell is judged and fine.
    error = rejected(
        write(tmp_path, "2024-03-04,AAPL,buy,100,,0\n2024-03-05,AAPL,sell,100,176,0\n")
    )
    assert error.problems == [(2, "price is missing")]


def test_long_error_lists_the_first_problems_and_counts_the_rest(tmp_path):
    error = rejected(write(tmp_path, "2024-03-09,AAPL,buy,1,1,0\n" * 60))
    assert len(error.problems) == 60
    assert "line 51:" in str(error) and "line 52:" not in str(error)
    assert "and 10 more" in str(error)


# --- a bad file as a whole -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("date,symbol,side,quantity,price\n", "header lacks column(s) fees"),
        ("date,symbol,side,qty,price,fee\n", "header lacks column(s) quantity, fees"),
        ("2024-03-04,AAPL,buy,100,175,1\n", "header lacks column(s) date, symbol"),
        ("date,symbol,side,quantity,price,fees,Price\n", "column 'price' given twice"),
    ],
)
def test_bad_header_is_line_1(tmp_path, header, expected):
    error = rejected(write(tmp_path, GOOD_BUY, header=header))
    assert error.problems[0][0] == 1
    assert expected in error.problems[0][1]


def test_header_after_blank_lines_keeps_physical_line_numbers(tmp_path):
    path = write(tmp_path, "2024-03-09,AAPL,buy,1,1,0\n", header="\n\n" + HEADER)
    assert rejected(path).problems[0][0] == 4


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty: expected the header date,symbol,side,quantity,price,fees"),
        (b"\n\n  \n", "is empty"),
        (HEADER.encode(), "has a header but no trades"),
        (HEADER.encode() + b",,,,,\n\n", "has a header but no trades"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00", "is not a text CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a text CSV"),
    ],
)
def test_unusable_file_is_a_named_error(tmp_path, content, expected):
    path = tmp_path / "trades.csv"
    path.write_bytes(content)
    error = rejected(path)
    assert error.problems[0][0] is None and expected in error.problems[0][1]
    assert str(error).startswith(f"trades file {path} ")
    if "is empty" in expected or "no trades" in expected:
        assert "unset TRADING_ASSETS_TRADES_PATH to run without a trades file" in str(error)


def test_missing_file_and_directory(tmp_path):
    error = rejected(tmp_path / "nope.csv")
    assert "was not found" in str(error) and "TRADING_ASSETS_TRADES_PATH" in str(error)
    assert "is not a file" in str(rejected(tmp_path))


def test_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "trades.csv"
    path.write_bytes((HEADER + GOOD_BUY + "2024-03-05,AAPL,buy,1,1,0 café\n").encode("latin-1"))
    error = rejected(path)
    assert error.problems[0][0] == 3 and "not UTF-8" in error.problems[0][1]


def test_unbalanced_quote_stops_the_reading_and_says_where(tmp_path):
    path = write(tmp_path, "2024-03-09,AAPL,buy,1,1,0\n" + '2024-03-04,AAPL,buy,1,"1\n' + GOOD_BUY)
    error = rejected(path)
    assert error.problems[0] == (2, "date 2024-03-09 (Saturday) is not a trading session")
    assert error.problems[1][0] == 3 and "not valid CSV" in error.problems[1][1]


# --- FIFO matching against hand-computed round trips ---------------------------------------------


def test_fifo_partial_fills_across_lots_with_pro_rata_fees(tmp_path):
    trades = trades_of(
        tmp_path,
        "2024-03-04,AAPL,buy,100,10,2\n"
        "2024-03-05,AAPL,buy,50,12,1\n"
        "2024-03-06,AAPL,sell,120,15,3\n"  # all of lot 1, 20 of lot 2
        "2024-03-07,AAPL,sell,30,11,0.6\n",  # the rest of lot 2
    )
    assert list(trades.columns) == list(TRADE_COLUMNS)
    got = trades[["entry_date", "entry_price", "exit_date", "exit_price", "shares"]]
    assert got.values.tolist() == [
        [dt.date(2024, 3, 4), 10.0, dt.date(2024, 3, 6), 15.0, 100.0],
        [dt.date(2024, 3, 5), 12.0, dt.date(2024, 3, 6), 15.0, 20.0],
        [dt.date(2024, 3, 5), 12.0, dt.date(2024, 3, 7), 11.0, 30.0],
    ]
    # lot 1: entry 2 + exit 3 x 100/120 = 4.5; lot 2 into sell 1: 1 x 20/50 + 3 x 20/120 = 0.9;
    # lot 2 into sell 2: the buy's remaining 0.6 + 0.6
    assert trades["fees"].tolist() == pytest.approx([4.5, 0.9, 1.2])
    assert trades["fees"].sum() == pytest.approx(2 + 1 + 3 + 0.6)
    # (exit - entry) x shares - fees
    assert trades["pnl"].tolist() == pytest.approx([495.5, 59.1, -31.2])
    assert set(trades["strategy"]) == {"user"} and set(trades["side"]) == {"long"}
    assert set(trades["exit_reason"]) == {"sell"}
    assert trades["setup"].isna().all() and trades["r_multiple"].isna().all()


def test_one_buy_closed_by_several_sells_and_symbols_interleaved(tmp_path):
    trades = trades_of(
        tmp_path,
        "2024-03-04,MSFT,buy,10,400,1\n"  # line 2
        "2024-03-04,AAPL,buy,30,170,0.3\n"  # 3
        "2024-03-05,AAPL,sell,10,171,0.1\n"  # 4
        "2024-03-05,MSFT,sell,4,410,0.4\n"  # 5
        "2024-03-06,AAPL,buy,10,172,0.2\n"  # 6
        "2024-03-07,AAPL,sell,25,175,0.5\n"  # 7: 20 of lot 3, 5 of lot 6
        "2024-03-08,MSFT,sell,6,390,0.3\n",  # 8
        last_close={"AAPL": 180.0, "MSFT": 1.0},
    )
    got = trades[["symbol", "entry_date", "exit_date", "shares", "fees", "pnl"]]
    d = dt.date
    expected = [
        # ordered by entry date, symbol, then buy line; a lot's closed portions in sell order
        ["AAPL", d(2024, 3, 4), d(2024, 3, 5), 10.0, 0.1 + 0.1, 1 * 10 - 0.2],
        ["AAPL", d(2024, 3, 4), d(2024, 3, 7), 20.0, 0.2 + 0.4, 5 * 20 - 0.6],
        ["MSFT", d(2024, 3, 4), d(2024, 3, 5), 4.0, 0.4 + 0.4, 10 * 4 - 0.8],
        ["MSFT", d(2024, 3, 4), d(2024, 3, 8), 6.0, 0.6 + 0.3, -10 * 6 - 0.9],
        ["AAPL", d(2024, 3, 6), d(2024, 3, 7), 5.0, 0.1 + 0.1, 3 * 5 - 0.2],
        ["AAPL", d(2024, 3, 6), None, 5.0, 0.1, 8 * 5 - 0.1],  # open, marked at 180
    ]
    assert got[["symbol", "entry_date", "exit_date", "shares"]].values.tolist() == [
        row[:4] for row in expected
    ]
    assert got["fees"].tolist() == pytest.approx([row[4] for row in expected])
    assert got["pnl"].tolist() == pytest.approx([row[5] for row in expected])
    assert trades["fees"].sum() == pytest.approx(1 + 0.3 + 0.1 + 0.4 + 0.2 + 0.5 + 0.3)


def test_open_remainder_with_and_without_last_close(tmp_path):
    body = "2024-03-04,AAPL,buy,100,10,2\n2024-03-05,AAPL,sell,40,12,1\n"
    marked = trades_of(tmp_path, body, last_close={"AAPL": 13.0})
    still_open = marked.iloc[-1]
    assert still_open["exit_date"] is None and still_open["exit_reason"] is None
    assert math.isnan(still_open["exit_price"])
    assert still_open["shares"] == 60.0
    assert still_open["fees"] == pytest.approx(1.2)  # its 60/100 of the buy's fees
    assert still_open["pnl"] == pytest.approx(3 * 60 - 1.2)
    assert marked.iloc[0]["pnl"] == pytest.approx(2 * 40 - (0.8 + 1))
    for last_close in (None, {}, {"MSFT": 400.0}, {"AAPL": float("nan")}):
        unmarked = trades_of(tmp_path, body, last_close=last_close)
        assert math.isnan(unmarked.iloc[-1]["pnl"])
        assert unmarked.iloc[0]["pnl"] == pytest.approx(2 * 40 - 1.8)


def test_fully_open_lot_keeps_all_its_fees(tmp_path):
    trades = trades_of(tmp_path, "2024-03-04,BRK-B,buy,3,400,1.5\n", {"BRK-B": 410.0})
    assert trades[["symbol", "shares", "fees", "pnl"]].values.tolist() == [
        ["BRK-B", 3.0, 1.5, 28.5]
    ]


def test_match_round_trips_refuses_an_oversold_frame_and_accepts_no_fills():
    fills = pd.DataFrame(
        {
            "line": [2],
            "date": [dt.date(2024, 3, 4)],
            "symbol": ["AAPL"],
            "side": ["sell"],
            "quantity": [1.0],
            "price": [1.0],
            "fees": [0.0],
        }
    )
    with pytest.raises(ValueError, match=r"sell of 1\.0 AAPL on 2024-03-04 \(line 2\)"):
        match_round_trips(fills)
    with pytest.raises(ValueError, match="side"):
        match_round_trips(fills.assign(side="SELL"))
    empty = match_round_trips(fills.iloc[:0])
    assert list(empty.columns) == list(TRADE_COLUMNS) and empty.empty


# --- property: shares and fees are conserved -----------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_bought_minus_sold_is_open_and_fees_add_up(tmp_path, seed):
    rng = np.random.default_rng(seed)
    days = sorted(SESSIONS)[:60]
    held = {s: 0 for s in UNIVERSE}  # in tenths of a share: exact
    lines = []
    for day in days:
        for _ in range(rng.integers(1, 4)):
            sym = str(rng.choice(UNIVERSE))
            if held[sym] and rng.random() < 0.5:
                qty = int(rng.integers(1, held[sym] + 1))
                held[sym] -= qty
                side = "sell"
            else:
                qty = int(rng.integers(1, 300))
                held[sym] += qty
                side = "buy"
            price = round(float(rng.uniform(10, 500)), 2)
            fees = round(float(rng.uniform(0, 3)), 2)
            lines.append(f"{day},{sym},{side},{qty / 10},{price},{fees}\n")
    path = write(tmp_path, "".join(lines))
    fills = read(path)
    last_close = {s: 100.0 for s in UNIVERSE}
    trades = match_round_trips(fills, last_close)

    signed = fills["quantity"].where(fills["side"] == "buy", -fills["quantity"])
    still_open = trades[trades["exit_date"].isna()]
    for sym in UNIVERSE:
        net = signed[fills["symbol"] == sym].sum()
        assert still_open.loc[still_open["symbol"] == sym, "shares"].sum() == pytest.approx(net)
        assert net == pytest.approx(held[sym] / 10)
        sold = fills.loc[(fills["symbol"] == sym) & (fills["side"] == "sell"), "quantity"].sum()
        closed = trades[(trades["symbol"] == sym) & trades["exit_date"].notna()]
        assert closed["shares"].sum() == pytest.approx(sold)
    assert trades["fees"].sum() == pytest.approx(fills["fees"].sum())
    assert (trades["shares"] > 0).all()
    assert (trades["exit_date"].isna() | (trades["exit_date"] >= trades["entry_date"])).all()
    # pnl adds up: what came in, less what went out, less fees, with open lots marked at 100
    cash = (fills["price"] * signed).sum()
    marked = 100.0 * still_open["shares"].sum()
    assert trades["pnl"].sum() == pytest.approx(marked - cash - fills["fees"].sum())
