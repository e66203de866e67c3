"""Where the shared market data is, for the tests (conftest) and the benchmarks alike.

$TRADING_ASSETS_SHARED_DATA, else ``../shared/data/market`` beside the repository. Plain Python (no
pytest), so a benchmark script can import it too.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_VARIABLE = "TRADING_ASSETS_SHARED_DATA"
DEFAULT_SHARED_MARKET = PROJECT_ROOT.parent / "shared" / "data" / "market"
PRICES_FILE = "prices_daily.parquet"


def shared_market_dir() -> Path:
    """$TRADING_ASSETS_SHARED_DATA if set, else ../shared/data/market."""
    configured = os.environ.get(SHARED_DATA_VARIABLE)
    return Path(configured) if configured else DEFAULT_SHARED_MARKET


def missing_shared_data() -> str | None:
    """None when the shared prices are there, else a message naming both places to fix it."""
    prices = shared_market_dir() / PRICES_FILE
    if prices.is_file():
        return None
    configured = os.environ.get(SHARED_DATA_VARIABLE)
    source = (
        f"{SHARED_DATA_VARIABLE}={configured}" if configured else f"{SHARED_DATA_VARIABLE} unset"
    )
    return (
        f"shared market data not found: {prices} does not exist ({source}; default "
        f"../shared/data/market = {DEFAULT_SHARED_MARKET}). Set {SHARED_DATA_VARIABLE} to the "
        f"directory holding {PRICES_FILE}, or put that directory at ../shared/data/market."
    )
