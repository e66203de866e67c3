"""Prices from files: a long Parquet/CSV table, or a directory of per-symbol Yahoo-export CSVs.

Long format: the columns of ``../shared/data/market/prices_daily.parquet`` (symbol, date, open, high,
low, close, volume; other columns are ignored). Prices pass through unchanged.

Directory format: one ``<SYMBOL>.csv`` per symbol (``BRK-B.csv``, ``^VIX.csv``) as Yahoo's
"Download" button writes it: ``Date,Open,High,Low,Close,Adj Close,Volume``. Yahoo's Close there is
split-adjusted only; like yfinance's ``auto_adjust=True`` we scale open/high/low by
``Adj Close / Close`` and use ``Adj Close`` as close, so every source stores the same kind of price.

Input errors are ``PriceDataError`` reading ``<path>: <problem>`` ("no rows", "missing column
'close'", "unreadable price file: ..." for a truncated or corrupt file). A long file serves every
symbol, so its error fails the request. In a directory each file is one symbol's: a bad file
fails that symbol alone (``FetchResult.failed``, the reason naming the file), exactly as a missing
file does, and the other symbols are served. A header-only file is such a failure ("no rows"),
not an empty success: an export that wrote no bars is a broken input, and the symbol keeps its
stored rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from trading_assets.core.prices import PRICE_COLUMNS, PriceDataError, empty_prices, normalize_prices
from trading_assets.core.symbols import InvalidSymbolError, normalize_symbol, validate_symbols
from trading_assets.sources.base import FetchResult

YAHOO_EXPORT_COLUMNS: tuple[str, ...] = (
    "Date",
    "Open",
    "High",
    "Low",
    "Close",
    "Adj Close",
    "Volume",
)


class FilesSource:
    """Reads prices for the requested symbols and sessions from a file or a directory."""

    def __init__(self, path: str | Path, name: str = "files"):
        self.path = Path(path)
        self.name = name
        if not self.path.exists():
            raise file_error(self.path, "price files not found")

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> FetchResult:
        symbols = validate_symbols(symbols)
        if not symbols:
            return FetchResult(empty_prices(self.name))
        if self.path.is_dir():
            return self._fetch_directory(symbols, start, end)
        frame = self._read_long(symbols, start, end)
        prices = normalize_prices(frame, source=self.name, origin=str(self.path))
        found = set(prices["symbol"])
        failed = {
            s: f"{self.path}: no rows between {start} and {end}" for s in symbols if s not in found
        }
        return FetchResult(prices, failed)

    def _read_long(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        suffix = self.path.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                dataset = ds.dataset(self.path, format="parquet")
            elif suffix == ".csv":
                dataset = ds.dataset(self.path, format="csv")
            else:
                raise file_error(
                    self.path, f"unsupported price file type {suffix!r} (use .parquet or .csv)"
                )
            names = {n.lower(): n for n in dataset.schema.names}
            missing = [c for c in PRICE_COLUMNS if c not in names]
            if missing:
                raise file_error(
                    self.path,
                    f"{missing_columns(missing)}; expected {list(PRICE_COLUMNS)}, "
                    f"got {dataset.schema.names}",
                )
            symbol_type = dataset.schema.field(names["symbol"]).type
            if not _is_text(symbol_type):
                # A header-only CSV types every column null, an empty pandas frame float: say so.
                raise file_error(
                    self.path, _no_rows(dataset) or f"column 'symbol' holds {symbol_type}, not text"
                )
            date_field = ds.field(names["date"])
            date_type = dataset.schema.field(names["date"]).type
            # Push the symbol and date filters into the scan: a 2.9 M-row file is read only where needed.
            lo, hi = _scalar(start, date_type), _scalar(end, date_type)
            flt = ds.field(names["symbol"]).isin(symbols)
            if lo is not None:
                flt &= (date_field >= lo) & (date_field <= hi)
            table = dataset.to_table(columns=[names[c] for c in PRICE_COLUMNS], filter=flt)
            if table.num_rows == 0 and (problem := _no_rows(dataset)):
                raise file_error(self.path, problem)
        except (pa.ArrowException, OSError) as exc:
            raise file_error(self.path, f"unreadable price file: {exc}") from exc
        frame = table.to_pandas()
        frame.columns = list(PRICE_COLUMNS)
        if lo is None:  # dates stored as text/timestamps of another type: filter after parsing
            dates = pd.to_datetime(frame["date"], errors="coerce").dt.date
            frame = frame[(dates >= start) & (dates <= end)]
        return frame

    def _fetch_directory(self, symbols: list[str], start: dt.date, end: dt.date) -> FetchResult:
        files: dict[str, Path] = {}
        for path in self.path.glob("*.csv"):
            try:
                files.setdefault(normalize_symbol(path.stem), path)
            except InvalidSymbolError:
                continue  # not a price file of ours: never turn a stray name into a symbol
        frames, failed = [], {}
        for sym in symbols:
            path = files.get(sym)
            if path is None:
                failed[sym] = f"no file {sym}.csv in {self.path}"
                continue
            try:
                frame = read_yahoo_export_csv(path, sym)
            except PriceDataError as exc:
                failed[sym] = str(exc)
                continue
            frames.append(frame[(frame["date"] >= start) & (frame["date"] <= end)])
        if not frames:
            return FetchResult(empty_prices(self.name), failed)
        prices = normalize_prices(
            pd.concat(frames, ignore_index=True), source=self.name, origin=str(self.path)
        )
        for sym in symbols:
            if sym not in failed and not (prices["symbol"] == sym).any():
                failed[sym] = f"{files[sym]}: no rows between {start} and {end}"
        return FetchResult(prices, failed)


def read_yahoo_export_csv(path: Path, symbol: str) -> pd.DataFrame:
    """One Yahoo-export CSV as long prices (adjusted like auto_adjust=True). PriceDataError if malformed."""
    try:
        raw = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise file_error(path, "empty file (no header, no rows)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise file_error(path, f"not a readable CSV: {exc}") from exc
    missing = [c for c in YAHOO_EXPORT_COLUMNS if c != "Adj Close" and c not in raw.columns]
    if missing:
        raise file_error(
            path,
            f"{missing_columns(missing)}; expected Yahoo export columns "
            f"{list(YAHOO_EXPORT_COLUMNS)}, got {list(raw.columns)}",
        )
    if raw.empty:
        raise file_error(path, "no rows")
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "date": raw["Date"],
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "volume": raw["Volume"],
        }
    )
    frame = normalize_prices(frame, source="files", origin=str(path))  # parses and type-checks
    if "Adj Close" in raw.columns:
        adj = pd.to_numeric(raw["Adj Close"], errors="coerce").to_numpy()
        keep = pd.to_datetime(raw["Date"], errors="coerce").dt.date
        adj_by_date = dict(zip(keep, adj, strict=True))
        adj_close = frame["date"].map(adj_by_date).astype(float)
        ratio = (adj_close / frame["close"]).where(adj_close.notna(), 1.0)
        for col in ("open", "high", "low"):
            frame[col] = frame[col] * ratio
        frame["close"] = frame["close"] * ratio
    return frame[list(PRICE_COLUMNS)]


def file_error(path: Path, problem: str) -> PriceDataError:
    """The error of an unusable price file: ``<path>: <problem>``."""
    return PriceDataError(f"{path}: {problem}")


def missing_columns(names: list[str]) -> str:
    """``missing column 'close'``, or ``missing columns 'open', 'close'``."""
    quoted = ", ".join(repr(n) for n in names)
    return f"missing column {quoted}" if len(names) == 1 else f"missing columns {quoted}"


def _no_rows(dataset: ds.Dataset) -> str | None:
    """ "no rows" when the file holds no row at all (reads one batch at most), else None."""
    return "no rows" if dataset.head(1).num_rows == 0 else None


def _is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _scalar(day: dt.date, arrow_type: pa.DataType):
    """A filter bound of the column's own type, or None when the column is not a date/timestamp."""
    if pa.types.is_date(arrow_type):
        return pa.scalar(day, type=arrow_type)
    if pa.types.is_timestamp(arrow_type):
        return pc.cast(pa.scalar(dt.datetime(day.year, day.month, day.day)), arrow_type)
    return None
