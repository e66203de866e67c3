"""The long daily-price table every source produces and every downstream asset reads.

One row per (symbol, session): ``symbol, date, open, high, low, close, volume, source, fetched_at``.
``date`` is the exchange-local session date (``datetime.date``, stored as DuckDB DATE, never a
timestamp), so re-materialising a session can never store the same day twice under two time zones.

Prices are as the source serves them. The yahoo source asks yfinance for ``auto_adjust=True``
(split- and dividend-adjusted OHLC, as the shared data set was built); the files and sample sources
pass the file's prices through unchanged (see README, "Prices and adjustment").
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from trading_assets.core.symbols import normalize_symbol_column

OHLC_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
OHLCV_COLUMNS: tuple[str, ...] = (*OHLC_COLUMNS, "volume")
PRICE_COLUMNS: tuple[str, ...] = ("symbol", "date", *OHLCV_COLUMNS)
PROVENANCE_COLUMNS: tuple[str, ...] = ("source", "fetched_at")
RAW_PRICE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, *PROVENANCE_COLUMNS)


class PriceDataError(ValueError):
    """Price data is malformed: missing columns, unparseable dates or non-numeric prices."""


def empty_prices(source: str = "none") -> pd.DataFrame:
    """An empty frame with the raw_prices columns and dtypes."""
    return normalize_prices(pd.DataFrame(columns=list(PRICE_COLUMNS)), source=source)


def normalize_prices(
    frame: pd.DataFrame,
    *,
    source: str,
    fetched_at: dt.datetime | None = None,
    origin: str = "price data",
) -> pd.DataFrame:
    """Coerce a long OHLCV frame to the raw_prices contract.

    - requires the PRICE_COLUMNS (matched case-insensitively); other columns are dropped;
    - validates every symbol (InvalidSymbolError) and parses ``date`` to ``datetime.date``;
    - coerces OHLCV to float64 (PriceDataError naming the column if a value is not numeric);
    - drops rows whose OHLC are all NaN (Yahoo pads halted days and unfinished bars that way);
    - sorts by (symbol, date). Duplicate (symbol, date) rows are kept: an asset check reports them.
    """
    cols = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in PRICE_COLUMNS if c not in cols]
    if missing:
        raise PriceDataError(
            f"{origin}: missing column(s) {missing}; expected {list(PRICE_COLUMNS)}, "
            f"got {[str(c) for c in frame.columns]}"
        )
    out = pd.DataFrame({c: frame[cols[c]].to_numpy() for c in PRICE_COLUMNS})
    out["symbol"] = normalize_symbol_column(out["symbol"])
    try:
        dates = pd.to_datetime(out["date"], errors="raise")
    except (ValueError, TypeError) as exc:
        raise PriceDataError(f"{origin}: unparseable value in column 'date': {exc}") from exc
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    out["date"] = dates.dt.date
    for col in OHLCV_COLUMNS:
        try:
            out[col] = pd.to_numeric(out[col], errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise PriceDataError(f"{origin}: non-numeric value in column {col!r}: {exc}") from exc
    out = out[~out[list(OHLC_COLUMNS)].isna().all(axis=1)]
    stamp = pd.Timestamp(fetched_at if fetched_at is not None else dt.datetime.now(dt.UTC))
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    out = out.assign(source=source, fetched_at=stamp)
    out["fetched_at"] = out["fetched_at"].astype("datetime64[us]")
    out = out.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    return out[list(RAW_PRICE_COLUMNS)]

