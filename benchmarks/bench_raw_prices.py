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
from _doc import machine, shared_market, write_section  # benchmarks/ is on sys.path as a script

from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.resources import PriceSourceResource, UniverseResource
from trading_assets.sources.sample import SP500_CONSTITUENTS
from trading_assets.storage.duckdb_io import DuckDBIOManager

START, END = "2000-01-03", "2025-07-23"


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
        # The full history holds 5 real bad bars (^VIX, HUBB): the blocking OHLC check fails, as it should.
        raise_on_error=False,
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
        arrow: pa.Table = con.execute("SELECT * FROM raw_prices").to_arrow_table()
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
        "| measure | value |",
        "|---|---|",
        f"| whole run (symbols + raw_prices, in-process) | {wall:.1f} s |",
        f"| peak resident memory of the process | {peak_gib:.2f} GiB |",
        f"| IO manager write (one transaction: delete range, insert, checks) | {write_s:.2f} s = {io_rate:,.0f} rows/s |",
        f"| floor: DuckDB `INSERT ... SELECT` of the same Arrow table (best of 3) | {floor_s:.2f} s = {floor_rate:,.0f} rows/s |",
        f"| **IO manager throughput / floor** | **{io_rate / floor_rate:.2f}** |",
        "",
        "Checks on the full history: "
        + ", ".join(f"`{k}` {'passed' if v else 'FAILED'}" for k, v in md["checks"].items())
        + " (the shared data has 5 real inconsistent bars: four ^VIX opens and one HUBB low).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_doc:
        write_section(text)


if __name__ == "__main__":
    main()
