"""Rebuild the bundled sample in trading_assets/sources/data/ from ../shared/data/market/.

Run from the project root: ``python scripts/build_sample.py [--shared ../shared/data/market]``.
The sample is ~50 S&P 500 members spread over all 11 GICS sectors, plus SPY, QQQ and ^VIX, from
SAMPLE_START to the end of the shared data: enough sessions for 200- and 252-day indicators.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trading_assets.core.symbols import BENCHMARK_SYMBOLS
from trading_assets.sources.sample import SAMPLE_DIR, SAMPLE_START, SAMPLE_SYMBOLS_BY_SECTOR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared/data/market"))
    shared = Path(parser.parse_args().shared)
    symbols = [s for syms in SAMPLE_SYMBOLS_BY_SECTOR.values() for s in syms]
    constituents = pd.read_csv(shared / "constituents.csv")
    for sector, syms in SAMPLE_SYMBOLS_BY_SECTOR.items():
        got = constituents.set_index("symbol").loc[syms, "sector"]
        assert (got == sector).all(), f"sector mismatch in sample pick: {got[got != sector]}"
    prices = pq.read_table(
        shared / "prices_daily.parquet",
        filters=[("symbol", "in", symbols + list(BENCHMARK_SYMBOLS))],
    ).to_pandas()
    prices["date"] = pd.to_datetime(prices["date"])
    prices = prices[prices["date"] >= SAMPLE_START].sort_values(["symbol", "date"])
    prices["date"] = prices["date"].dt.date
    table = pa.Table.from_pandas(
        prices[["symbol", "date", "open", "high", "low", "close", "volume"]], preserve_index=False
    )
    pq.write_table(table, SAMPLE_DIR / "sample_prices.parquet", compression="zstd", compression_level=9)
    shutil.copyfile(shared / "constituents.csv", SAMPLE_DIR / "sp500_constituents.csv")
    shutil.copyfile(shared / "fundamentals_2025-02-01.csv", SAMPLE_DIR / "fundamentals_2025-02-01.csv")
    print(f"wrote {len(prices):,} rows for {prices['symbol'].nunique()} symbols to {SAMPLE_DIR}")


if __name__ == "__main__":
    main()
