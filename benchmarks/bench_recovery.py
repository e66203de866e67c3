"""What an unclean shutdown costs on the full store: the key check on open, and repair-duckdb.

Builds the full 2000-01-03..2025-07-23 store of all 506 shared symbols with ``trading-assets main``
(files source; ``--store FILE`` keeps it there, or reuses it if it exists), then times, each in a
fresh process on a fresh copy of the store:

- clean: DuckDBIOManager.read_rows of one symbol's raw_prices from a file closed cleanly;
- after a crash: the same read after a writer committed a small change (one bar's volume) and was
  SIGKILLed before closing: the ``.wal`` it leaves makes the open scan every keyed table for
  duplicated keys first; then the same read once more, as a read-only open leaves the ``.wal``;
- repair: ``trading-assets repair-duckdb`` after a crash left 2024 Q1 of raw_prices twice, as
  duckdb 1.5.5 did (issue 7): copies identical, and an older version beside each bar.

Seconds: the median of --repeats; for a read its own time (the process's imports excluded), for
the repair the whole command. Peak RSS: the largest of the process's over the repeats.

Usage: python benchmarks/bench_recovery.py [--write-doc] [--store FILE] [--symbol AAPL] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from _doc import FULL_END, FULL_START, ROOT, machine, publish, run_main, shared_market

from trading_assets.storage.duckdb_integrity import wal_path

# A writer that commits one statement and is killed before it closes the file (as
# trading_assets_tests/test_crash_safety.py's DUPLICATE_AND_DIE): the change lives in the .wal only.
COMMIT_AND_DIE = """
import os, signal, sys, duckdb
con = duckdb.connect(sys.argv[1])  # kept open: a dropped connection closes the file cleanly
con.execute(sys.argv[2])
os.kill(os.getpid(), signal.SIGKILL)
"""
READ_ONE_SYMBOL = """
import sys, time
from trading_assets.storage.duckdb_io import DuckDBIOManager
began = time.perf_counter()
rows = DuckDBIOManager(database=sys.argv[1]).read_rows("raw_prices", symbols=[sys.argv[2]])
print(time.perf_counter() - began, len(rows))
"""
QUARTER = "date BETWEEN DATE '2024-01-01' AND DATE '2024-03-31'"
CRASHES = {
    "small change": "UPDATE raw_prices SET volume = volume + 1 "
    f"WHERE symbol = 'AAPL' AND date = DATE '{FULL_END}'",
    "copies identical": f"INSERT INTO raw_prices SELECT * FROM raw_prices WHERE {QUARTER}",
    "an older version beside each bar (fetched_at a day earlier)": "INSERT INTO raw_prices "
    f"SELECT * REPLACE (fetched_at - INTERVAL 1 DAY AS fetched_at) FROM raw_prices WHERE {QUARTER}",
}
REPAIRED = list(CRASHES)[1:]  # the crashes that duplicate keys


def child(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (GiB) and output of a Python process run from the checkout."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed:\n{out[-3000:]}")
    return wall, usage.ru_maxrss / 2**20, out


def fresh_copy(store: Path, db: Path) -> Path:
    for leftover in db.parent.glob(db.name + "*"):  # the copy, its .wal and .unverified
        leftover.unlink()
    shutil.copyfile(store, db)
    return db


def crash(db: Path, change: str) -> Path:
    """``db`` after a writer committed ``change`` and was SIGKILLed before closing it."""
    died = subprocess.run([sys.executable, "-c", COMMIT_AND_DIE, str(db), CRASHES[change]])
    assert died.returncode == -signal.SIGKILL and wal_path(db).exists(), died
    return db


def read(db: Path, symbol: str) -> tuple[float, float, str]:
    _, peak, out = child(["-c", READ_ONE_SYMBOL, str(db), symbol])
    seconds, rows = out.split()[-2:]
    return float(seconds), peak, f"{int(rows):,} rows"


def repair(db: Path) -> tuple[float, float, str]:
    wall, peak, out = child(["-m", "trading_assets.cli", "repair-duckdb", str(db)])
    return wall, peak, next(line for line in out.splitlines() if "raw_prices:" in line)


def keyed_tables(store: Path) -> str:
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.sql(
            "SELECT table_name, estimated_size FROM duckdb_tables() "
            """WHERE comment LIKE '%"unique_key"%' ORDER BY estimated_size DESC"""
        ).fetchall()
    tables = ", ".join(f"{table} {n:,}" for table, n in rows)
    return f"{len(rows)} keyed tables, {sum(n for _, n in rows):,} rows: {tables}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--store", help="the full store: reused if it exists, else built there")
    parser.add_argument("--symbol", default="AAPL", help="the symbol read")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shared = shared_market()
    measured_on = machine()
    runs: dict[str, list[tuple[float, float, str]]] = {
        name: [] for name in ("clean", "wal", "again")
    }
    runs.update({change: [] for change in REPAIRED})
    with tempfile.TemporaryDirectory(prefix="bench_recovery_") as tmp:
        tmp = Path(tmp)
        store = Path(args.store).resolve() if args.store else tmp / "store.duckdb"
        built = "built earlier by"
        if not store.exists():
            prices, universe = shared / "prices_daily.parquet", shared / "constituents.csv"
            seconds = run_main(tmp / "home", store, prices, universe, FULL_START, FULL_END)
            built = f"built in {seconds:.0f} s by"
        keyed, size_gb = keyed_tables(store), store.stat().st_size / 1e9
        db = tmp / "copy.duckdb"
        for _ in range(args.repeats):  # interleaved, so a disturbance hits every row alike
            runs["clean"].append(read(fresh_copy(store, db), args.symbol))
            runs["wal"].append(read(crash(db, "small change"), args.symbol))
            wal_left = wal_path(db).exists()
            runs["again"].append(read(db, args.symbol))
            duckdb.connect(str(db)).close()  # a writer's open
            wal_after_write = wal_path(db).exists()
            for change in REPAIRED:
                runs[change].append(repair(crash(fresh_copy(store, db), change)))

    def median(key: str) -> float:
        return statistics.median(r[0] for r in runs[key])

    def peak(key: str) -> float:
        return max(r[1] for r in runs[key])

    def row(label: str, key: str) -> str:
        return f"| {label} | {median(key):.2f} s | {peak(key):.2f} GiB | {runs[key][-1][2]} |"

    again = "left the `.wal`: checked again" if wal_left else "removed the `.wal`"
    lines = [
        "## Recovery after an unclean shutdown (`bench_recovery.py`)",
        "",
        "Command: `python benchmarks/bench_recovery.py --write-doc`. The full store "
        f"{FULL_START}..{FULL_END} of all 506 shared symbols ({size_gb:.2f} GB, {built} "
        f"`trading-assets main`; {keyed}). Each measure in a fresh process on a fresh copy (in the "
        f"page cache); seconds the median of {args.repeats}, peak RSS the largest.",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {measured_on}, duckdb {duckdb.__version__}.",
        "",
        "| what | seconds | peak RSS | result |",
        "|---|---:|---:|---|",
        row(f"clean file: open + `read_rows('raw_prices', symbols=[{args.symbol!r}])`", "clean"),
        row(
            "the same, a `.wal` beside the file (its writer killed): every keyed table checked",
            "wal",
        ),
        row(f"the same again (the read-only open {again})", "again"),
        *(
            row(f"`trading-assets repair-duckdb`, 2024 Q1 of raw_prices twice: {change}", change)
            for change in REPAIRED
        ),
        "",
        f"The check adds {median('wal') - median('clean'):.2f} s and {peak('wal') - peak('clean'):.2f} "
        "GiB to an open, until a read-write open "
        + (
            "still leaves the `.wal`."
            if wal_after_write
            else "replays the log and removes the `.wal`."
        )
        + " A read's seconds are its own (the process's imports excluded); a repair's are the whole "
        "command's, process start included. The result column is the last repeat's.",
        "",
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
