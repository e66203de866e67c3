"""Daily runs on the full store: what the evening schedule costs, and what a dividend adds.

Builds the full 2000-01-03..2025-07-22 store of all 506 shared symbols with ``trading-assets main``
(files source), copies it, then times ``trading-assets main --start 2025-07-23 --end 2025-07-23`` as a
user (a subprocess, a persistent DAGSTER_HOME) twice:

- plain: the same file: nothing restated;
- dividend: a file in which one stock's bars before 2025-07-23 are scaled by 0.99 (a 1 % dividend
  going ex that day, as yfinance would serve it): raw_prices finds the changed overlap, re-fetches
  that symbol's history and restates it; indicators, and the watchlist over its whole history, are
  recomputed in the same run.

Usage: python benchmarks/bench_daily.py [--write-doc] [--symbol AAPL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
from _doc import ROOT, machine, shared_market, write_section

FIRST, LAST_STORED, DAY = "2000-01-03", "2025-07-22", "2025-07-23"


def run_main(home: Path, db: Path, prices: Path, universe: Path, start: str, end: str) -> float:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TRADING_ASSETS_DUCKDB_PATH": str(db),
        "TRADING_ASSETS_PRICE_SOURCE": "files",
        "TRADING_ASSETS_PRICES_PATH": str(prices),
        "TRADING_ASSETS_UNIVERSE": str(universe),
        "TRADING_ASSETS_START_DATE": FIRST,
    }
    cmd = [sys.executable, "-m", "trading_assets.cli", "main", "--start", start, "--end", end]
    began = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return seconds


def restated(db: Path) -> str:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            f"SELECT symbol, kind, round(factor, 6) FROM price_revisions WHERE date = DATE '{DAY}'"
        ).fetchall()
    return ", ".join(f"{s} {k} x{f}" for s, k, f in rows) or "nothing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--symbol", default="AAPL", help="the stock that pays the dividend")
    args = parser.parse_args()
    shared = shared_market()
    universe = shared / "constituents.csv"
    with tempfile.TemporaryDirectory(prefix="bench_daily_") as tmp:
        tmp = Path(tmp)
        prices = pd.read_parquet(shared / "prices_daily.parquet")
        prices["date"] = pd.to_datetime(prices["date"])
        plain = tmp / "plain.parquet"
        prices.to_parquet(plain)
        dividend = prices.copy()
        before = (dividend["symbol"] == args.symbol) & (dividend["date"] < pd.Timestamp(DAY))
        dividend.loc[before, ["open", "high", "low", "close"]] *= 0.99
        dividend_file = tmp / "dividend.parquet"
        dividend.to_parquet(dividend_file)

        home, db = tmp / "home", tmp / "store.duckdb"
        backfill = run_main(home, db, plain, universe, FIRST, LAST_STORED)
        shutil.copytree(home, tmp / "home2")
        shutil.copyfile(db, tmp / "store2.duckdb")
        daily = run_main(home, db, plain, universe, DAY, DAY)
        with_dividend = run_main(tmp / "home2", tmp / "store2.duckdb", dividend_file, universe, DAY, DAY)
        what = restated(tmp / "store2.duckdb"), restated(db)

    lines = [
        "## Daily runs on the full store (`bench_daily.py`)",
        "",
        "Command: `python benchmarks/bench_daily.py --write-doc`. `trading-assets main` as a subprocess "
        "(files source, all 506 shared symbols, persistent DAGSTER_HOME), process start and definitions "
        "load included.",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}.",
        "",
        "| run | wall | restated |",
        "|---|---:|---|",
        f"| backfill {FIRST}..{LAST_STORED} (the store) | {backfill:.1f} s | - |",
        f"| daily {DAY}, nothing changed | {daily:.1f} s | {what[1]} |",
        f"| daily {DAY}, {args.symbol} went ex-dividend (history x0.99) | {with_dividend:.1f} s | {what[0]} |",
        "",
        "The dividend run re-fetches one symbol's 25-year history, recomputes its indicators over that "
        "history and the watchlist over every session (entries, stops and sizes change); the plain "
        "run reads a 756-session lookback and 5 overlap sessions.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_doc:
        write_section(text)


if __name__ == "__main__":
    main()
