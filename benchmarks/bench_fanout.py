"""Benchmark: raw_prices' fetch fanned out, one step per batch, in one process or over several.

A universe of ``--symbols`` shared S&P 500 stocks (plus SPY, QQQ, ^VIX) is fetched over one month
with the yahoo source (real yfinance, ``--batch-size`` symbols per batch, so one fetch step per
batch) from the project's local Yahoo-format server (trading_assets_tests/yahoo_server.py). The
server waits ``--latency`` seconds before answering each chart request, standing in for Yahoo's
round trip: the fetch is then bound by waiting on the network, as against Yahoo, not by this
machine's CPU. Nothing leaves 127.0.0.1.

The same job (symbols + raw_prices into a fresh DuckDB file) runs under Dagster's in-process
executor (the batch steps one after another) and the multiprocess executor (a process per step,
``max_concurrent`` at a time; spawn, and forkserver with the project preloaded). Each run starts
with an empty yfinance cache (so every mode asks the same requests) and must store the same table.
Reported per mode: the run's wall time; the fetch steps' span (first start to last end), the sum of
their durations, and their ratio (how many batches were in flight on average).

    python benchmarks/bench_fanout.py [--write-doc] [--symbols 500] [--batch-size 100] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
from _doc import machine, publish, shared_market  # benchmarks/ is on sys.path as a script

from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.core.universe import BENCHMARK_SYMBOLS
from trading_assets.resources import PriceSourceResource, UniverseResource
from trading_assets.sources.yahoo import configure_yfinance_cache
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.yahoo_server import YahooChartServer

START, END = "2024-03-01", "2024-03-28"  # 20 sessions, an empty store: no overlap fetched
SERVED_FROM = "2024-02-01"
FETCH_STEP = re.compile(r"raw_prices\.fetch_batch\[\d+\]")
PRELOAD = ["trading_assets.assets.prices", "yfinance"]


class LatentYahooServer(YahooChartServer):
    """The local Yahoo-format server, answering each chart request after ``latency`` seconds (its
    ThreadingHTTPServer waits for concurrent requests side by side, as a remote server would), and
    counting the most chart requests it had in flight at once."""

    latency = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._gauge = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def _chart_body(self, symbol, query):
        with self._gauge:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
            return super()._chart_body(symbol, query)
        finally:
            with self._gauge:
                self.in_flight -= 1


def _job(name: str, executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager.configure_at_launch(),
            "price_source": PriceSourceResource.configure_at_launch(),
            "universe": UniverseResource.configure_at_launch(),
        },
        jobs=[dg.define_asset_job(name, selection=[symbols, raw_prices], executor_def=executor)],
    )
    return defs.resolve_job_def(name)


def in_process_job() -> dg.JobDefinition:
    return _job("fetch_in_process", dg.in_process_executor)


def multiprocess_job() -> dg.JobDefinition:
    return _job("fetch_multiprocess", dg.multiprocess_executor)


def modes(batches: int) -> list:
    """(label, job, multiprocess executor config): one process, then a process per fetch step."""
    forkserver = {"forkserver": {"preload_modules": PRELOAD}}
    return [
        ("in-process executor (one process)", in_process_job, None),
        ("multiprocess, defaults (max_concurrent = 2 cores, spawn)", multiprocess_job, {}),
        (f"multiprocess, max_concurrent {batches}, spawn", multiprocess_job,
         {"max_concurrent": batches}),
        (f"multiprocess, max_concurrent {batches}, forkserver (project preloaded)",
         multiprocess_job, {"max_concurrent": batches, "start_method": forkserver}),
    ]  # fmt: skip


def universe(n: int) -> list[str]:
    """The first ``n`` stocks of the shared constituents, sorted."""
    listed = pd.read_csv(shared_market() / "constituents.csv", dtype=str)["symbol"]
    return sorted(listed.str.upper().unique())[:n]


def served_prices(stocks: list[str]) -> pd.DataFrame:
    frame = pq.read_table(
        shared_market() / "prices_daily.parquet",
        filters=[("symbol", "in", [*stocks, *BENCHMARK_SYMBOLS])],
    ).to_pandas()
    dates = pd.to_datetime(frame["date"])
    keep = (dates >= pd.Timestamp(SERVED_FROM)) & (dates <= pd.Timestamp(END))
    return frame[keep].reset_index(drop=True)


def run_once(tmp: Path, tag: str, job_fn, execution, base_url: str, stocks, batch_size: int):
    """One run in a fresh instance, store and yfinance cache: (wall s, fetch stats, stored rows)."""
    work = tmp / tag
    (work / "home").mkdir(parents=True)
    db = work / "prices.duckdb"
    # An empty yfinance cache, at the one place every process uses: a forkserver keeps the
    # environment it started with, so the place cannot change between runs, only be emptied.
    yf_cache = Path(os.environ["XDG_CACHE_HOME"]) / "py-yfinance"
    configure_yfinance_cache(yf_cache)  # closes this process's open cache files
    shutil.rmtree(yf_cache, ignore_errors=True)
    configure_yfinance_cache(yf_cache)
    # A CSV: a comma list of 500 symbols is longer than a file name, which the spec is tried as.
    universe_csv = work / "universe.csv"
    pd.DataFrame({"symbol": stocks, "name": None, "sector": None}).to_csv(universe_csv, index=False)
    run_config = {
        "resources": {
            "io_manager": {"config": {"database": str(db)}},
            "price_source": {
                "config": {"kind": "yahoo", "yahoo_base_url": base_url, "batch_size": batch_size}
            },
            "universe": {"config": {"spec": str(universe_csv), "price_source_kind": "yahoo"}},
        },
        **({"execution": {"config": execution}} if execution is not None else {}),
    }
    tags = {"dagster/asset_partition_range_start": START, "dagster/asset_partition_range_end": END}
    with dg.DagsterInstance.local_temp(str(work / "home")) as instance:
        began = time.perf_counter()
        result = dg.execute_job(
            dg.reconstructable(job_fn), instance=instance, run_config=run_config, tags=tags
        )
        wall = time.perf_counter() - began
        if not result.success:
            raise SystemExit(f"{tag}: the run failed; see {work / 'home'}")
        stats = fetch_stats(instance.all_logs(result.run_id))
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT * EXCLUDE (fetched_at) FROM raw_prices ORDER BY symbol, date"
        ).df()
    return wall, stats, rows


def fetch_stats(entries) -> dict:
    starts, ends, pids = {}, {}, set()
    for entry in entries:
        event = entry.dagster_event
        if event is None or not FETCH_STEP.fullmatch(entry.step_key or ""):
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
            pids.add(event.pid)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            ends[entry.step_key] = entry.timestamp
    span = max(ends.values()) - min(starts.values())
    busy = sum(ends[k] - starts[k] for k in ends)
    return {"steps": len(ends), "span": span, "busy": busy, "processes": len(pids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--symbols", type=int, default=500, help="stocks in the universe")
    parser.add_argument("--batch-size", type=int, default=100, help="symbols per fetch step")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per chart request")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode (best is shown)")
    args = parser.parse_args()
    where = machine()
    stocks = universe(args.symbols)
    batches = -(-(len(stocks) + len(BENCHMARK_SYMBOLS)) // args.batch_size)
    LatentYahooServer.latency = args.latency
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_fanout_") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "xdg")  # before any step process starts
        server = LatentYahooServer(served_prices(stocks)).start()
        try:
            reference = None
            for number, (label, job_fn, execution) in enumerate(modes(batches)):
                runs = []
                for repeat in range(args.repeats):
                    tag = f"mode{number}-{repeat}"
                    server.most_in_flight = 0
                    server.clear_log()
                    wall, stats, rows = run_once(
                        Path(tmp), tag, job_fn, execution, server.base_url, stocks, args.batch_size
                    )
                    stats["at_server"] = server.most_in_flight
                    stats["requests"] = len(server.chart_requests())
                    if reference is None:
                        reference = rows
                    pd.testing.assert_frame_equal(rows, reference)  # every mode stores the same
                    runs.append((wall, stats))
                    print(f"{label} #{repeat + 1}: {wall:.1f} s, {stats}", flush=True)
                results.append((label, runs))
        finally:
            server.stop()
    load_end = os.getloadavg()[0]
    base = min(w for w, _ in results[0][1])
    lines = [
        "## Fetch fan-out (raw_prices, one step per batch)",
        "",
        f"Command: `python benchmarks/bench_fanout.py --write-doc --symbols {args.symbols} "
        f"--batch-size {args.batch_size} --latency {args.latency}`.",
        "",
        f"Data: {len(stocks)} shared S&P 500 stocks + SPY, QQQ, ^VIX over {START}..{END} (20 sessions, "
        f"{len(reference):,} rows stored), fetched with the yahoo source (real yfinance, batches of "
        f"{args.batch_size}: {batches} fetch steps) from the local Yahoo-format server, which waits "
        f"{args.latency} s before each chart answer (an assumed Yahoo round trip; yfinance asks two "
        "per symbol with an empty cache: the time-zone probe and the prices). So the fetch is I/O "
        "bound, as it is against Yahoo, and no request leaves 127.0.0.1. Each run: a fresh instance, "
        "DuckDB file and yfinance cache; every run stored the same table.",
        f"Measured {dt.date.today()} on {where}; {load_end:.2f} at the end.",
        "",
        "| executor | run wall (best) | median | fetch steps' span | sum of fetch steps | "
        "steps in flight | chart requests | most in flight | processes | vs one process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in results:
        wall, stats = min(runs, key=lambda r: r[0])
        median = statistics.median(w for w, _ in runs)
        lines.append(
            f"| {label} | {wall:.1f} s | {median:.1f} s | {stats['span']:.1f} s | "
            f"{stats['busy']:.1f} s | {stats['busy'] / stats['span']:.1f} | {stats['requests']:,} | "
            f"{stats['at_server']} | "
            f"{stats['processes']} | {base / wall:.2f}x |"
        )
    lines += [
        "",
        "Run wall: `execute_job` from call to return (symbols, plan, fetch steps, judge and write). "
        "Span: first fetch step start to last fetch step end; steps in flight = sum / span, the "
        "batches fetching at once on average; chart requests: what the server answered (the same "
        "in every mode: an empty cache each run); most in flight: the most it was answering at once. One process keeps at most 2 requests in flight on this "
        "2-core VM, whatever `threads` yf.download is given: yfinance 1.7's thread pool "
        "(`multitasking`) is sized to the CPU count when yfinance is imported, and "
        "`set_max_threads` does not resize it. A process per batch multiplies that. A multiprocess "
        "step first starts a Python process that loads the code (seconds of CPU on this VM, shared "
        "by the steps starting together); forkserver forks it from a process with the project "
        "imported. Timings on this VM move by 10-20 % with other jobs' load; compare rows of the "
        "same run.",
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
