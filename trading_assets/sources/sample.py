"""The bundled real-data sample: the main job runs offline on a fresh clone with it.

About 50 S&P 500 members across all 11 GICS sectors plus SPY, QQQ and ^VIX, from SAMPLE_START to
2025-07-23, taken from ``../shared/data/market/`` by ``scripts/build_sample.py``. Prices are as in
the shared data: stocks split- and dividend-adjusted (yfinance auto_adjust=True); SPY raw; QQQ
split-adjusted only; ^VIX as published by CBOE.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trading_assets.sources.files import FilesSource

SAMPLE_DIR = Path(__file__).resolve().parent / "data"
SAMPLE_PRICES = SAMPLE_DIR / "sample_prices.parquet"
SP500_CONSTITUENTS = SAMPLE_DIR / "sp500_constituents.csv"
SAMPLE_FUNDAMENTALS = SAMPLE_DIR / "fundamentals_2025-02-01.csv"
SAMPLE_START = "2019-01-02"
SAMPLE_END = "2025-07-23"

SAMPLE_SYMBOLS_BY_SECTOR: dict[str, list[str]] = {
    "Information Technology": ["AAPL", "MSFT", "NVDA", "ORCL", "ADBE"],
    "Communication Services": ["GOOGL", "META", "NFLX", "DIS"],
    "Consumer Discretionary": ["AMZN", "TSLA", "HD", "MCD", "NKE"],
    "Consumer Staples": ["PG", "KO", "PEP", "WMT", "COST"],
    "Energy": ["XOM", "CVX", "COP", "SLB"],
    "Financials": ["JPM", "BRK-B", "V", "GS", "BAC"],
    "Health Care": ["UNH", "JNJ", "LLY", "PFE", "MRK"],
    # GEV listed 2024-03-27: a real short history inside the sample.
    "Industrials": ["CAT", "GE", "HON", "UPS", "GEV"],
    "Materials": ["LIN", "SHW", "NEM", "FCX"],
    "Real Estate": ["PLD", "AMT", "O", "SPG"],
    "Utilities": ["NEE", "DUK", "SO", "AEP"],
}
SAMPLE_SYMBOLS: list[str] = [s for syms in SAMPLE_SYMBOLS_BY_SECTOR.values() for s in syms]


class SampleSource(FilesSource):
    """The bundled sample, read like any long Parquet file."""

    def __init__(self) -> None:
        super().__init__(SAMPLE_PRICES, name="sample")


def sample_universe() -> pd.DataFrame:
    """The sample's stocks with names and sectors from the bundled S&P 500 list."""
    constituents = pd.read_csv(SP500_CONSTITUENTS, dtype=str)
    return constituents.set_index("symbol").loc[SAMPLE_SYMBOLS, ["name", "sector"]].reset_index()


def sp500_universe() -> pd.DataFrame:
    """The bundled S&P 500 constituents (snapshot of 2025-07-24) with names and sectors."""
    return pd.read_csv(SP500_CONSTITUENTS, dtype=str)[["symbol", "name", "sector"]]
