"""Shared fixtures: the real market data beside the project, and a throwaway DAGSTER_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_MARKET = Path(os.environ.get("TRADING_ASSETS_SHARED_DATA", PROJECT_ROOT.parent / "shared/data/market"))
SHARED_PRICES = SHARED_MARKET / "prices_daily.parquet"


def shared_prices(symbols: list[str], start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Real rows of ../shared/data/market/prices_daily.parquet for a few symbols (date as datetime.date)."""
    if not SHARED_PRICES.exists():
        pytest.skip(f"shared market data not found at {SHARED_PRICES}")
    frame = pq.read_table(SHARED_PRICES, filters=[("symbol", "in", symbols)]).to_pandas()
    dates = pd.to_datetime(frame["date"])
    keep = pd.Series(True, index=frame.index)
    if start:
        keep &= dates >= pd.Timestamp(start)
    if end:
        keep &= dates <= pd.Timestamp(end)
    frame = frame[keep]
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _isolated_dagster_home(tmp_path_factory, monkeypatch):
    """Never touch a developer's DAGSTER_HOME or ./data from a test."""
    home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
