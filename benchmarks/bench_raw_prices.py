"""Benchmark: a full raw_prices backfill (all 506 symbols, 2000-01-03..2025-07-23) in one Dagster run.

Source: the shared prices_daily.parquet ($TRADING_ASSETS_SHARED_DATA, else ../shared/data/market)
through the `files` source. Measures the run's wall time and peak memory, the IO manager's write
throughput (rows/s), and a floor measured in the same process: DuckDB inserting the same Arrow table
straight into an empty table.

    python benchmarks/bench_raw_prices.py [--write-doc]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
from _doc import (  # benchmarks/ is on sys.path as a script
    FULL_END,
    FULL_START,
    machine,
    publish,
    shared_market,
)

from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.resources import PriceSourceResource, UniverseResource
from trading_assets.sources.sample import SP500_CONSTITUENTS
from trading_assets.storage.duckdb_io import DuckDBIOManager

START, END = FULL_START, FULL_END
# The same measures on duckdb 1.5.5: `git archive` of c08bc7d (the commit before the move to 2.0.1)
# in a venv with duckdb==1.5.5, this machine, 2026-12-02, load average 1.12 at start.
WAS_1_5_5 = {
    "wall": "61.4 s",
    "peak": "2.75 GiB",
    "write": "2.28 s = 1,255,470 rows/s",
    "floor": "1.00 s = 2,853,776 rows/s",
    "ratio": "0.44",
}


def run_backfill(shared: Path, db: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = dg.materialize(
        [symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(
                kind="files", path=str(shared / "prices_daily.parquet")
            ),
            "universe": UniverseResource(spec=str(SP500_CONSTITUENTS), price_source_kind="files"),
        },
        tags={
            "dagster/asset_partition_range_start": START,
            "dagster/asset_partition_range_end": END,
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    wall = time.perf_counter() - t0
    md = {
        k: v.value
        for k, v in result.asset_materializations_for_node("raw_prices")[0].metadata.items()
    }
    # a range's materialisations carry a pointer; the run's numbers are on its one observation
    for observation in result.asset_observations_for_node("raw_prices"):
        md.update({k: v.value for k, v in observation.metadata.items()})
    md["checks"] = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return wall, md


def floor_insert(db: Path, tmp: Path) -> tuple[int, float]:
    """DuckDB's own speed: the stored rows as one Arrow table, inserted into an empty table."""
    with duckdb.connect(str(db), read_only=True) as con:
        arrow: pa.Table = con.sql("SELECT * FROM raw_prices").to_arrow_table()
        ddl = con.execute(
            "SELECT sql FROM duckdb_tables() WHERE table_name = 'raw_prices'"
        ).fetchone()[0]
    best = float("inf")
    for i in range(3):
        with duckdb.connect(str(tmp / f"floor{i}.duckdb")) as con:
            con.execute(ddl)
            t0 = time.perf_counter()
            con.execute("INSERT INTO raw_prices BY NAME SELECT * FROM arrow")
            best = min(best, time.perf_counter() - t0)
    return arrow.num_rows, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--write-doc", action="store_true", help="update this section of docs/benchmarks.md"
    )
    args = parser.parse_args()
    shared = shared_market()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        wall, md = run_backfill(shared, tmp / "bench.duckdb")
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        rows, floor_s = floor_insert(tmp / "bench.duckdb", tmp)
    write_s = float(md["write_seconds"])
    io_rate, floor_rate = rows / write_s, rows / floor_s
    lines = [
        "## raw_prices full backfill (files source, one Dagster run)",
        "",
        f"Measured {dt.date.today()} on {machine()}.",
        f"Command: `python benchmarks/bench_raw_prices.py`. Range {START}..{END}, "
        f"{md['symbols_fetched']} symbols, {rows:,} rows.",
        "",
        "| measure | duckdb 2.0.1 | was (duckdb 1.5.5) |",
        "|---|---|---|",
        f"| whole run (symbols + raw_prices, in-process) | {wall:.1f} s | {WAS_1_5_5['wall']} |",
        f"| peak resident memory of the process | {peak_gib:.2f} GiB | {WAS_1_5_5['peak']} |",
        f"| IO manager write (one transaction: delete range, insert, checks) | {write_s:.2f} s = "
        f"{io_rate:,.0f} rows/s | {WAS_1_5_5['write']} |",
        f"| floor: DuckDB `INSERT ... SELECT` of the same Arrow table (best of 3) | {floor_s:.2f} s = "
        f"{floor_rate:,.0f} rows/s | {WAS_1_5_5['floor']} |",
        f"| **IO manager throughput / floor** | **{io_rate / floor_rate:.2f}** | {WAS_1_5_5['ratio']} |",
        "",
        "Was: the same on duckdb 1.5.5 at c08bc7d (the commit before the move to 2.0.1), this machine, "
        "2026-12-02. Recorded before (2026-11-24, an AMD EPYC VM, the code of issue 3, before quarantine "
        "and restatements): whole run 37.0 s, 1.66 GiB, write 2.74 s, floor 1.08 s, ratio 0.40.",
        "",
        "Checks on the full history: "
        + ", ".join(f"`{k}` {'passed' if v else 'did not pass'}" for k, v in md["checks"].items())
        + " (non-blocking: the shared data has 5 real inconsistent bars, four ^VIX opens and one HUBB "
        "low, which are quarantined).",
        "",
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
