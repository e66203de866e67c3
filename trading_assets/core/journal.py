"""The user's own trades: a CSV of fills, validated whole, matched FIFO into round trips.

``trade_journal`` is the backtests' trades plus, when TRADING_ASSETS_TRADES_PATH names one, a file
of the trader's real fills. This module reads that file (``read_trade_file``) and turns the fills
into TRADE_COLUMNS rows (``match_round_trips``); the asset reads the variable and does the union.

The file (``sources/data/example_trades.csv`` is a bundled example):

    date,symbol,side,quantity,price,fees
    2024-03-04,AAPL,buy,100,175.10,1.00
    2024-03-11,AAPL,sell,40,172.75,0.40

- UTF-8 text (a byte-order mark, as Excel writes, is fine), comma-separated, ``"``-quoted where
  needed. Line 1 is the header; line numbers in errors are the file's physical lines.
- Header: the six names above, in any order, case and surrounding spaces ignored. All six are
  required, ``fees`` too, so a misspelt ``fee`` column cannot silently zero every fee. Other
  columns (``notes``, ``account``) and unnamed ones are ignored; a name given twice is an error.
- Blank lines, and rows whose every field is empty (a spreadsheet's trailing ``,,,,,``), are
  skipped. Any other row must have exactly as many fields as the header.
- ``date``: YYYY-MM-DD, a session of the exchange calendar (no weekend, no holiday).
  ``symbol``: the project's strict ticker pattern (``aapl`` reads as AAPL), and in the universe.
  ``side``: ``buy`` or ``sell``, any case. ``quantity`` and ``price``: positive plain decimals
  (fractional shares are fine; no ``$``, thousands separators, exponents, ``nan`` or ``inf``).
  ``fees``: a non-negative plain decimal for the whole fill; blank means 0.
- A sell may not exceed the shares open in its symbol at that point (long only: no short sales).
- A header-only file is an error: a trader who points the pipeline at a file of no trades has
  most likely pointed it at the wrong file. Without trades, leave the variable unset.

Validation is all or nothing: every bad row is collected and ``TradeFileError`` lists them all,
each with its line; no trade of a bad file is stored. Identical lines are two fills, not a
duplicate: two fills of 100 at one price on one day are common.

Order: fills are replayed by date; fills of one date in file order (a same-day buy and sell of one
symbol must be listed buy first). So a file sorted newest-first works, as long as no symbol is
bought and sold on one day.

Matching (FIFO, long only): a sell closes the oldest open buy lots first. Each lot portion a sell
closes is one row (shares = that portion), so a sell spanning two lots gives two rows, and a lot
partly closed keeps its remainder open. Fees are split pro rata to shares: a buy's fees over the
portions of its quantity, a sell's over the portions it closed, so the rows' fees add up to the
file's. pnl = (exit_price - entry_price) x shares - fees. An open remainder has a null
exit_date/exit_price/exit_reason and its pnl marked at the symbol's last close, less its share of
entry fees (NaN when no close is given). ``r_multiple`` is null: the file has no stop, and R
without a stop would be invented.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import defaultdict, deque
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from trading_assets.core.backtest.result import LONG, TRADE_COLUMNS
from trading_assets.core.symbols import InvalidSymbolError, normalize_symbol

TRADES_PATH_ENV = "TRADING_ASSETS_TRADES_PATH"
USER_STRATEGY = "user"
SELL_EXIT_REASON = "sell"
BUY, SELL = "buy", "sell"

TRADE_FILE_COLUMNS: tuple[str, ...] = ("date", "symbol", "side", "quantity", "price", "fees")
FILL_COLUMNS: tuple[str, ...] = ("line", *TRADE_FILE_COLUMNS)
# Problems with the whole file (missing, not text, no rows) carry no line.
WHOLE_FILE = None
# An error message lists this many problems; .problems keeps them all.
MAX_PROBLEMS_SHOWN = 50

DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# Plain decimals only: "100", "0.5", ".5", "-3" (read, then refused for its sign).
NUMBER_PATTERN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)


class TradeFileError(ValueError):
    """The trades file cannot be used; ``problems`` lists every reason as (line, message).

    ``line`` is the file's physical line (1 = the header), or None for the file as a whole.
    """

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str]]):
        self.path = Path(path)
        self.problems = list(problems)
        if len(self.problems) == 1 and self.problems[0][0] is None:
            super().__init__(f"trades file {self.path} {self.problems[0][1]}")
            return
        shown = [
            f"  line {line}: {message}" if line is not None else f"  {message}"
            for line, message in self.problems[:MAX_PROBLEMS_SHOWN]
        ]
        more = len(self.problems) - MAX_PROBLEMS_SHOWN
        if more > 0:
            shown.append(f"  ... and {more} more")
        count = len(self.problems)
        super().__init__(
            f"trades file {self.path} rejected, nothing stored ({count} problem"
            f"{'s' if count != 1 else ''}):\n" + "\n".join(shown)
        )


def read_trade_file(
    path: str | Path, *, symbols: Collection[str], sessions: Collection[dt.date]
) -> pd.DataFrame:
    """The file's fills in file order as FILL_COLUMNS, after validating every row.

    ``symbols``: the universe (normal form, e.g. from ``validate_symbols``); ``sessions``: the
    calendar's sessions as ``datetime.date``. Columns: ``line`` (int), ``date`` (datetime.date),
    ``symbol``, ``side`` ("buy"/"sell"), ``quantity``, ``price``, ``fees`` (float).
    Raises TradeFileError listing every problem of the file, each with its line.
    """
    path = Path(path)
    text = _read_text(path)
    known_symbols, known_sessions = set(symbols), _Sessions.of(sessions)
    records, broken = _records(text)
    if not records:
        raise TradeFileError(path, [broken or (WHOLE_FILE, _EMPTY_FILE)])
    (header_line, header), body = records[0], records[1:]
    positions, header_problems = _header_positions(header)
    if header_problems:
        raise TradeFileError(path, [(header_line, p) for p in header_problems])

    problems: list[tuple[int | None, str]] = []
    fills: list[_Fill] = []
    for line, fields in body:
        if len(fields) != len(header):
            problems.append(
                (line, f"expected {len(header)} fields as the header, got {len(fields)}")
            )
            continue
        fill, row_problems = _parse_row(fields, positions, known_symbols, known_sessions)
        problems.extend((line, p) for p in row_problems)
        fills.append(replace(fill, line=line))
    if broken:
        problems.append(broken)
    if not fills and not problems:
        raise TradeFileError(path, [(WHOLE_FILE, "has a header but no trades; " + _NO_TRADES)])
    problems.extend(_oversold(fills))
    if problems:
        problems.sort(key=lambda p: p[0] or 0)
        raise TradeFileError(path, problems)
    return pd.DataFrame(
        {
            "line": pd.Series([f.line for f in fills], dtype="int64"),
            "date": pd.Series([f.date for f in fills], dtype=object),
            "symbol": pd.Series([f.symbol for f in fills], dtype=object),
            "side": pd.Series([f.side for f in fills], dtype=object),
            "quantity": pd.Series([float(f.quantity) for f in fills], dtype="float64"),
            "price": pd.Series([float(f.price) for f in fills], dtype="float64"),
            "fees": pd.Series([float(f.fees) for f in fills], dtype="float64"),
        }
    )[list(FILL_COLUMNS)]


def match_round_trips(
    fills: pd.DataFrame, last_close: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """FIFO round trips of ``fills`` (as read_trade_file returns them) as TRADE_COLUMNS rows.

    One row per lot portion a sell closed, plus one per lot (remainder) still open, ordered by
    entry_date, symbol, then fill order. ``last_close``: symbol -> the close open lots are marked
    at; a symbol without one has a NaN pnl while open. Raises ValueError for a sell beyond the
    open position (read_trade_file has already refused such a file).
    """
    missing = [c for c in TRADE_FILE_COLUMNS if c not in fills.columns]
    if missing:
        raise ValueError(f"fills lack column(s) {missing}; expected {list(FILL_COLUMNS)}")
    bad_sides = sorted(set(fills["side"]) - {BUY, SELL}, key=str)
    if bad_sides:
        raise ValueError(f"fills have side(s) {bad_sides}; expected {BUY!r} or {SELL!r}")
    lines = fills["line"] if "line" in fills.columns else pd.Series(range(1, len(fills) + 1))
    parsed = [
        _Fill(
            line=int(line),
            date=date,
            symbol=symbol,
            side=side,
            quantity=_decimal(quantity),
            price=_decimal(price),
            fees=_decimal(fees) if pd.notna(fees) else Decimal(0),
        )
        for line, date, symbol, side, quantity, price, fees in zip(
            lines,
            fills["date"],
            fills["symbol"],
            fills["side"],
            fills["quantity"],
            fills["price"],
            fills["fees"],
            strict=True,
        )
    ]
    rows: list[dict[str, object]] = []
    for event in _replay(parsed):
        if isinstance(event, _Oversell):
            raise ValueError(event.message(with_line=True))
        rows.append(event.row(last_close or {}))
    return _trades_frame(rows)


def read_user_trades(
    path: str | Path,
    *,
    symbols: Collection[str],
    sessions: Collection[dt.date],
    last_close: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """read_trade_file then match_round_trips: the file's round trips as TRADE_COLUMNS."""
    return match_round_trips(
        read_trade_file(path, symbols=symbols, sessions=sessions), last_close=last_close
    )


# --- reading -------------------------------------------------------------------------------------

_NO_TRADES = f"unset {TRADES_PATH_ENV} to run without a trades file"
_EMPTY_FILE = f"is empty: expected the header {','.join(TRADE_FILE_COLUMNS)}; " + _NO_TRADES


def _read_text(path: Path) -> str:
    if not path.exists():
        raise TradeFileError(path, [(WHOLE_FILE, f"was not found (set by {TRADES_PATH_ENV})")])
    if not path.is_file():
        raise TradeFileError(path, [(WHOLE_FILE, "is not a file")])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TradeFileError(path, [(WHOLE_FILE, f"cannot be read: {exc}")]) from exc
    # A NUL byte never occurs in a text CSV but always in a spreadsheet, archive or image.
    if b"\x00" in data:
        raise TradeFileError(
            path, [(WHOLE_FILE, "is not a text CSV (binary content: an .xlsx? export it as CSV)")]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TradeFileError(
            path,
            [(line, f"not UTF-8 text (byte {data[exc.start]:#04x}): save the file as UTF-8 CSV")],
        ) from exc


def _records(text: str) -> tuple[list[tuple[int, list[str]]], tuple[int, str] | None]:
    """(first physical line, fields) per non-blank CSV record, and what stopped the reading.

    A quoted field may span lines. Unbalanced quotes stop the reading there: nothing after them
    can be trusted to split into rows, so only the rows before them are judged.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return records, None
        except csv.Error as exc:
            return records, (start, f"not valid CSV ({exc}); the lines after it were not read")
        if any(f.strip() for f in fields):
            records.append((start, fields))
        start = reader.line_num + 1


def _header_positions(header: list[str]) -> tuple[dict[str, int], list[str]]:
    names = [h.strip().lower() for h in header]
    positions: dict[str, int] = {}
    problems: list[str] = []
    for i, name in enumerate(names):
        if name in TRADE_FILE_COLUMNS and name in positions:
            problems.append(f"column {name!r} given twice")
        positions.setdefault(name, i)
    missing = [c for c in TRADE_FILE_COLUMNS if c not in positions]
    if missing:
        problems.insert(
            0,
            f"header lacks column(s) {', '.join(missing)}: expected "
            f"{','.join(TRADE_FILE_COLUMNS)} (got {','.join(header)})",
        )
    return {c: positions[c] for c in TRADE_FILE_COLUMNS if c in positions}, problems


@dataclass(frozen=True)
class _Sessions:
    dates: frozenset[dt.date]
    first: dt.date | None
    last: dt.date | None

    @classmethod
    def of(cls, sessions: Collection[dt.date]) -> _Sessions:
        dates = frozenset(sessions)
        return cls(dates, min(dates, default=None), max(dates, default=None))


@dataclass(frozen=True)
class _Fill:
    line: int
    date: dt.date | None
    symbol: str | None
    side: str | None
    quantity: Decimal | None
    price: Decimal | None
    fees: Decimal | None


def _parse_row(
    fields: list[str],
    positions: Mapping[str, int],
    known_symbols: set[str],
    known_sessions: _Sessions,
) -> tuple[_Fill, list[str]]:
    """One row's fill (None where a field is unusable) and its problems."""
    raw = {c: fields[i].strip() for c, i in positions.items()}
    problems: list[str] = []

    date: dt.date | None = None
    if not DATE_PATTERN.fullmatch(raw["date"]):
        problems.append(f"date {raw['date']!r} is not a YYYY-MM-DD date")
    else:
        try:
            date = dt.date.fromisoformat(raw["date"])
        except ValueError:
            problems.append(f"date {raw['date']!r} is not a calendar date")
        else:
            if date not in known_sessions.dates:
                problems.append(_not_a_session(date, known_sessions))

    symbol: str | None = None
    try:
        symbol = normalize_symbol(raw["symbol"])
    except InvalidSymbolError:
        problems.append(f"symbol {raw['symbol']!r} is not a valid ticker (e.g. AAPL, BRK-B)")
    else:
        if symbol not in known_symbols:
            problems.append(f"symbol {symbol} is not in the universe")

    side: str | None = raw["side"].lower()
    if side not in (BUY, SELL):
        problems.append(f"side {raw['side']!r} is neither buy nor sell")
        side = None

    quantity = _positive(raw["quantity"], "quantity", problems)
    price = _positive(raw["price"], "price", problems)
    fees: Decimal | None = Decimal(0)
    if raw["fees"]:
        fees = _number(raw["fees"], "fees", problems)
        if fees is not None and fees < 0:
            problems.append(f"fees {raw['fees']} are negative")
            fees = None
    return _Fill(0, date, symbol, side, quantity, price, fees), problems


def _not_a_session(date: dt.date, sessions: _Sessions) -> str:
    if sessions.last is not None and date > sessions.last:
        return f"date {date} is after the last session known, {sessions.last}"
    if sessions.first is not None and date < sessions.first:
        return f"date {date} is before the first session known, {sessions.first}"
    return f"date {date} ({date.strftime('%A')}) is not a trading session"


def _number(text: str, what: str, problems: list[str]) -> Decimal | None:
    if not NUMBER_PATTERN.fullmatch(text):
        problems.append(f"{what} {text!r} is not a number" if text else f"{what} is missing")
        return None
    return Decimal(text)


def _positive(text: str, what: str, problems: list[str]) -> Decimal | None:
    value = _number(text, what, problems)
    if value is not None and value <= 0:
        problems.append(f"{what} {text} is not positive")
        return None
    return value


def _oversold(fills: list[_Fill]) -> list[tuple[int | None, str]]:
    """Sells beyond the open position, judged on the rows that parsed.

    A symbol with a row whose date, side or quantity is unusable is left out: its position is
    unknown, and a refused buy would make every later sell look oversold. It is judged once that
    row is fixed.
    """
    unknown = {f.symbol for f in fills if None in (f.date, f.side, f.quantity)}
    usable = [
        f
        for f in fills
        if f.symbol is not None and f.symbol not in unknown and None not in (f.date, f.side)
    ]
    # Price and fees do not move a position: fill them in so the replay can run.
    usable = [replace(f, price=f.price or Decimal(1), fees=f.fees or Decimal(0)) for f in usable]
    return [(e.fill.line, e.message()) for e in _replay(usable) if isinstance(e, _Oversell)]


def _decimal(value: object) -> Decimal:
    # repr gives the shortest text that reads back as the same float: 0.1 -> Decimal("0.1"), so
    # fractional shares the file wrote as decimals net to exactly zero.
    return Decimal(repr(float(value)))


# --- matching ------------------------------------------------------------------------------------


@dataclass
class _Lot:
    buy: _Fill
    open: Decimal  # shares of the buy not yet sold
    fees_left: Decimal  # the buy's fees not yet given to a closed portion


@dataclass(frozen=True)
class _Closed:
    lot: _Lot
    sell: _Fill
    shares: Decimal
    fees: Decimal

    def row(self, last_close: Mapping[str, float]) -> dict[str, object]:
        buy, sell = self.lot.buy, self.sell
        pnl = (sell.price - buy.price) * self.shares - self.fees
        return _row(
            buy, sell.date, float(sell.price), self.shares, self.fees, pnl, SELL_EXIT_REASON
        )


@dataclass(frozen=True)
class _Open:
    lot: _Lot

    def row(self, last_close: Mapping[str, float]) -> dict[str, object]:
        buy, shares, fees = self.lot.buy, self.lot.open, self.lot.fees_left
        close = last_close.get(buy.symbol)
        pnl = (
            None
            if close is None or pd.isna(close)
            else (_decimal(close) - buy.price) * shares - fees
        )
        return _row(buy, None, np.nan, shares, fees, pnl, None)


@dataclass(frozen=True)
class _Oversell:
    fill: _Fill
    position: Decimal

    def message(self, *, with_line: bool = False) -> str:
        f = self.fill
        where = f" (line {f.line})" if with_line else ""
        return (
            f"sell of {f.quantity} {f.symbol} on {f.date}{where} exceeds the {self.position} "
            "shares open then (fills are replayed by date, then file order)"
        )


def _replay(fills: list[_Fill]) -> Iterator[_Closed | _Open | _Oversell]:
    """FIFO over fills in date order (file order within a date); open lots come last."""
    lots: dict[str, deque[_Lot]] = defaultdict(deque)
    opened: list[_Lot] = []
    for fill in sorted(fills, key=lambda f: (f.date, f.line)):
        book = lots[fill.symbol]
        if fill.side == BUY:
            lot = _Lot(fill, fill.quantity, fill.fees)
            book.append(lot)
            opened.append(lot)
            continue
        position = sum((lot.open for lot in book), Decimal(0))
        if fill.quantity > position:
            yield _Oversell(fill, position)
            continue  # judged alone: later sells see the position without it
        to_sell, exit_fees_left = fill.quantity, fill.fees
        while to_sell > 0:
            lot = book[0]
            shares = min(lot.open, to_sell)
            # The last portion of a fill takes what is left of its fees, so the rows add up exactly.
            entry_fees = (
                lot.fees_left if shares == lot.open else lot.buy.fees * shares / lot.buy.quantity
            )
            exit_fees = exit_fees_left if shares == to_sell else fill.fees * shares / fill.quantity
            lot.open -= shares
            lot.fees_left -= entry_fees
            to_sell -= shares
            exit_fees_left -= exit_fees
            if lot.open == 0:
                book.popleft()
            yield _Closed(lot, fill, shares, entry_fees + exit_fees)
    for lot in opened:
        if lot.open > 0:
            yield _Open(lot)


def _row(
    buy: _Fill,
    exit_date: dt.date | None,
    exit_price: float,
    shares: Decimal,
    fees: Decimal,
    pnl: Decimal | None,
    exit_reason: str | None,
) -> dict[str, object]:
    return {
        "strategy": USER_STRATEGY,
        "symbol": buy.symbol,
        "side": LONG,
        "setup": None,
        "entry_date": buy.date,
        "entry_price": float(buy.price),
        "exit_date": exit_date,
        "exit_price": exit_price,
        "shares": float(shares),
        "fees": float(fees),
        "pnl": np.nan if pnl is None else float(pnl),
        "r_multiple": np.nan,
        "exit_reason": exit_reason,
        "_line": buy.line,
    }


def _trades_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*TRADE_COLUMNS, "_line"])
    # Stable: a lot's closed portions keep their sell order, its open remainder comes last.
    frame = frame.sort_values(["entry_date", "symbol", "_line"], kind="stable")
    frame = frame.drop(columns="_line").reset_index(drop=True)
    for col in ("entry_price", "exit_price", "shares", "fees", "pnl", "r_multiple"):
        frame[col] = frame[col].astype("float64")
    for col in ("strategy", "symbol", "side", "setup", "entry_date", "exit_date", "exit_reason"):
        frame[col] = frame[col].astype(object)
    frame["exit_date"] = frame["exit_date"].where(frame["exit_date"].notna(), None)
    return frame[list(TRADE_COLUMNS)]
