"""Point-in-time fundamentals: market-cap snapshots, each dated by the day it was known (``as_of``).

A snapshot is a set of ``symbol, market_cap`` rows known on one ``as_of`` date. The table keeps
every snapshot (unique per symbol and as_of); the screen reads, for each session, the latest
snapshot at or before it (screen.py), so a backtest never sees a size from its future.

Snapshot files (TRADING_ASSETS_FUNDAMENTALS_PATH, default the bundled S&P 500 file of 2025-02-01):
a CSV with ``symbol`` and ``market_cap`` (USD) whose date is an ``as_of`` column (one file may then
hold several snapshots) or the file name (``fundamentals_2025-02-01.csv``); or a directory of such
CSVs. A file that cannot be placed in time, has no rows or has an unusable value is an error:
a snapshot without a date would reintroduce the look-ahead this module exists to prevent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from trading_assets.core.symbols import normalize_symbol_column
from trading_assets.core.universe import read_csv_columns

FUNDAMENTALS_COLUMNS: tuple[str, ...] = ("symbol", "market_cap", "as_of", "source")
FILE_SOURCE = "file"
YAHOO_SOURCE = "yahoo"
# The date in a snapshot file's name, e.g. fundamentals_2025-02-01.csv.
FILE_DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
SNAPSHOT_FILE_GLOB = "*.csv"


class FundamentalsSnapshotError(ValueError):
    """A snapshot source is unusable: missing, unreadable, empty, undated or with bad values."""


def read_fundamentals_snapshots(path: str | Path) -> pd.DataFrame:
    """Every snapshot in a CSV file or a directory of CSVs, as FUNDAMENTALS_COLUMNS.

    Raises FundamentalsSnapshotError naming the file for anything unusable, and for a (symbol,
    as_of) that two files, or two rows of one file, both claim.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob(SNAPSHOT_FILE_GLOB))
        if not files:
            raise FundamentalsSnapshotError(f"fundamentals directory {path} holds no *.csv file")
    else:
        files = [path]
    frame = pd.concat([read_fundamentals_csv(f) for f in files], ignore_index=True)
    _no_conflicting_rows(frame, f"fundamentals {path}")
    return frame


def read_fundamentals_csv(path: str | Path) -> pd.DataFrame:
    """One CSV's snapshot(s): ``symbol, market_cap (float, NaN when unknown), as_of (date), source``.

    ``as_of`` comes from an ``as_of`` column, else from the date in the file name.
    """
    path = Path(path)
    frame, cols = read_csv_columns(
        path, "fundamentals", ("symbol", "market_cap"), error=FundamentalsSnapshotError
    )
    where = f"fundamentals file {path}"
    if frame.empty:
        raise FundamentalsSnapshotError(f"{where} has no rows")
    raw = frame[cols["market_cap"]]
    caps = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = (caps.isna() & raw.notna()) | (caps <= 0) | caps.abs().eq(float("inf"))
    if bad.any():
        shown = frame.loc[bad, [cols["symbol"], cols["market_cap"]]].head(5).values.tolist()
        raise FundamentalsSnapshotError(
            f"{where}: market_cap must be a positive number (USD) or empty, e.g. {shown}"
        )
    if "as_of" in cols:
        as_of = _dates(frame[cols["as_of"]], where)
    else:
        match = FILE_DATE_PATTERN.search(path.name)
        if match is None:
            raise FundamentalsSnapshotError(
                f"{where} has no as_of column and no YYYY-MM-DD date in its name: a snapshot "
                "must say when it was known"
            )
        as_of = _dates(pd.Series([match.group(0)] * len(frame)), where)
    out = pd.DataFrame(
        {
            "symbol": normalize_symbol_column(frame[cols["symbol"]].astype(str)),
            "market_cap": caps,
            "as_of": as_of,
            "source": FILE_SOURCE,
        }
    )
    _no_conflicting_rows(out, where)
    return out.drop_duplicates(["symbol", "as_of"]).reset_index(drop=True)


def market_cap_snapshot(
    caps: Mapping[str, float], as_of: dt.date, source: str = YAHOO_SOURCE
) -> pd.DataFrame:
    """A fetched snapshot (symbol -> market cap) as FUNDAMENTALS_COLUMNS rows dated ``as_of``."""
    symbols = sorted(caps)
    return pd.DataFrame(
        {
            "symbol": pd.Series(symbols, dtype=object),
            "market_cap": pd.Series([float(caps[s]) for s in symbols], dtype="float64"),
            "as_of": pd.Series([as_of] * len(symbols), dtype=object),
            "source": source,
        }
    )[list(FUNDAMENTALS_COLUMNS)]


def combine_snapshots(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Snapshots from several sources in one frame; where two claim one (symbol, as_of), the first wins.

    (Files come first: a file dated today was put there on purpose, a Yahoo fetch is the default.)
    """
    frame = pd.concat([f[list(FUNDAMENTALS_COLUMNS)] for f in frames], ignore_index=True)
    return frame.drop_duplicates(["symbol", "as_of"], keep="first").reset_index(drop=True)


def snapshot_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per as_of: source(s), rows and symbols with a known market cap, oldest first."""
    if frame.empty:
        return pd.DataFrame(columns=["as_of", "source", "rows", "market_cap_known"])
    grouped = frame.groupby("as_of", sort=True)
    return pd.DataFrame(
        {
            "source": grouped["source"].agg(lambda s: ",".join(sorted(set(s)))),
            "rows": grouped.size(),
            "market_cap_known": grouped["market_cap"].count(),
        }
    ).reset_index()


def _dates(values: pd.Series, where: str) -> pd.Series:
    """Calendar dates (``datetime.date``) from YYYY-MM-DD text or dates; an error names the bad ones."""
    parsed = pd.to_datetime(values, errors="coerce", format="%Y-%m-%d")
    bad = parsed.isna()
    if bad.any():
        shown = values[bad].astype(str).unique()[:5].tolist()
        raise FundamentalsSnapshotError(f"{where}: as_of must be a YYYY-MM-DD date, got {shown}")
    return pd.Series(parsed.dt.date, index=values.index, dtype=object)


def _no_conflicting_rows(frame: pd.DataFrame, where: str) -> None:
    """Two rows for one (symbol, as_of) with different caps: which one was true is unknowable."""
    distinct = frame.drop_duplicates(["symbol", "as_of", "market_cap"])
    dup = distinct.duplicated(["symbol", "as_of"], keep=False)
    if dup.any():
        shown = distinct.loc[dup, ["symbol", "as_of"]].drop_duplicates().head(5)
        raise FundamentalsSnapshotError(
            f"{where}: conflicting market caps for one symbol and as_of, e.g. "
            f"{shown.astype(str).values.tolist()}"
        )
