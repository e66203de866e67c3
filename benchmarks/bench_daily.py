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
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
from _doc import FULL_END, FULL_START, machine, publish, run_main, shared_market

FIRST, LAST_STORED, DAY = FULL_START, "2025-07-22", FULL_END
# The same runs on duckdb 1.5.5: `git archive` of c08bc7d (the commit before the move to 2.0.1) in a
# venv with duckdb==1.5.5, this machine, 2026-12-02, load average 0.97 at start.
WAS_1_5_5 = {"backfill": 73.4, "daily": 6.7, "dividend": 17.4}


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
        with_dividend = run_main(
            tmp / "home2", tmp / "store2.duckdb", dividend_file, universe, DAY, DAY
        )
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
        "| run | wall | was (duckdb 1.5.5) | restated |",
        "|---|---:|---:|---|",
        f"| backfill {FIRST}..{LAST_STORED} (the store) | {backfill:.1f} s | {WAS_1_5_5['backfill']} s | - |",
        f"| daily {DAY}, nothing changed | {daily:.1f} s | {WAS_1_5_5['daily']} s | {what[1]} |",
        f"| daily {DAY}, {args.symbol} went ex-dividend (history x0.99) | {with_dividend:.1f} s | "
        f"{WAS_1_5_5['dividend']} s | {what[0]} |",
        "",
        "Was: the same runs on duckdb 1.5.5 at c08bc7d (the commit before the move to 2.0.1), this "
        "machine, 2026-12-02; recorded before at 2a4b4ea: 73.2 s, 6.6 s, 16.5 s. Timings on this 2-core "
        "VM move by 5-10 % between runs.",
        "",
        "The dividend run re-fetches one symbol's 25-year history, recomputes its indicators over that "
        "history and the watchlist over every session (entries, stops and sizes change); the plain "
        "run reads a 756-session lookback and 5 overlap sessions.",
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
