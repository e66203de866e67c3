"""The read API under load while a materialisation writes the same DuckDB file.

Store: ``trading-assets main`` on the bundled sample (50 stocks + SPY, QQQ, ^VIX, 2019-01-02 ..
2025-07-23) into a temporary directory. Then, for each way of reading the file:

- ``snapshot`` (the default of ``trading-assets api``): requests answered from a private copy of
  the file, refreshed under a brief read-only lock when the file changed;
- ``open-per-request`` (``--open-per-request``): the file opened read-only for every request,
  retrying up to 10 s while a writer holds it, then 503;

the real ``trading-assets api`` process is started on a free port of 127.0.0.1, warmed up with one
request, and then at the same time (a) ``trading-assets main`` re-materialises the whole sample into
the same file (every table rewritten; its writer waits for the file's lock with the IO manager's
backoff) and (b) ``--clients`` threads, each with its own keep-alive HTTP connection, send
at least ``--requests`` GETs, and keep sending until the materialisation has finished (at most
``--max-load-seconds``, then the load stops and the writer finishes alone): a mix of /prices and /indicators of a random symbol over a random
quarter, /environment, /watchlist, /journal/positions, /performance, /backtests/<s>/equity of a
year, /health. Every answer other than 200 is an error. Reported: latency p50/p99/max as the
client sees it, requests per second, errors, and the writer's outcome, its wall time against the
same run with no API running, and how often it had to wait for the lock.

Usage: python benchmarks/bench_api.py [--write-doc] [--requests 5000] [--clients 16]
"""

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _doc import ROOT, machine, publish

from trading_assets.core.backtest.result import STRATEGIES
from trading_assets_tests.moto_server import free_port

MODES = {"snapshot": [], "open-per-request": ["--open-per-request"]}
LOCK_WAIT = "waiting for the lock on DuckDB file"
STARTUP_SECONDS = 60.0
WRITER_TIMEOUT_SECONDS = 900


def environment(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "TRADING_ASSETS_DUCKDB_PATH": str(root / "bench.duckdb"),
        "TRADING_ASSETS_REPORTS_DIR": str(root / "reports"),
        "TMPDIR": str(root),
    }


def materialise(root: Path) -> tuple[float, int, int, str]:
    """``trading-assets main`` on the sample: (seconds, return code, lock waits, last lines)."""
    began = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "trading_assets.cli", "main"],
            cwd=ROOT, env=environment(root), capture_output=True, text=True, check=False,
            timeout=WRITER_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return time.perf_counter() - began, -1, out.count(LOCK_WAIT), "timed out"
    seconds = time.perf_counter() - began
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
    return seconds, done.returncode, done.stdout.count(LOCK_WAIT), tail


def start_api(root: Path, flags: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "trading_assets.cli", "api", "--port", str(port), *flags],
        cwd=ROOT, env=environment(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            con.request("GET", "/health")
            if con.getresponse().status == 200:
                con.close()
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"trading-assets api did not answer on port {port} within {STARTUP_SECONDS} s")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def request_mix(symbols: list[str], sessions: list[str], count: int, seed: int) -> list[str]:
    """``count`` URLs: the endpoints a dashboard polls, random symbols and windows."""
    rng = random.Random(seed)
    urls = []
    for _ in range(count):
        first = rng.randrange(0, len(sessions) - 63)
        start, end = sessions[first], sessions[first + 62]
        symbol = rng.choice(symbols).replace("^", "%5E")
        kind = rng.random()
        if kind < 0.35:
            urls.append(f"/prices/{symbol}?start={start}&end={end}")
        elif kind < 0.6:
            urls.append(
                f"/indicators/{symbol}?start={start}&end={end}&columns=rsi_14,sma_50,atr_14"
            )
        elif kind < 0.7:
            urls.append(f"/environment?date={end}")
        elif kind < 0.8:
            urls.append("/watchlist")
        elif kind < 0.87:
            urls.append("/journal/positions")
        elif kind < 0.92:
            urls.append("/performance")
        elif kind < 0.98:
            year = sessions[rng.randrange(0, len(sessions) - 252)]
            urls.append(f"/backtests/{rng.choice(STRATEGIES)}/equity?start={year}&limit=252")
        else:
            urls.append("/health")
    return urls


def load(
    port: int, urls: list[str], clients: int, writing: threading.Thread, max_seconds: float
) -> tuple[list[float], Counter, float]:
    """Send ``urls`` (at least all of them, cycling, while ``writing`` is alive, for at most
    ``max_seconds``) from ``clients`` threads; (latencies in ms, statuses, wall seconds)."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    guard = threading.Lock()
    began = time.perf_counter()
    sent = [0]

    def next_url() -> str | None:
        with guard:
            n = sent[0]
            if n >= len(urls) and (
                not writing.is_alive() or time.perf_counter() - began > max_seconds
            ):
                return None
            sent[0] += 1
            return urls[n % len(urls)]

    def client() -> None:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (url := next_url()) is not None:
            start = time.perf_counter()
            try:
                con.request("GET", url)
                answer = con.getresponse()
                answer.read()
                status = str(answer.status)
            except OSError as exc:
                status = type(exc).__name__
                con.close()
                con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = (time.perf_counter() - start) * 1000
            with guard:
                latencies.append(elapsed)
                statuses[status] += 1
        con.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, time.perf_counter() - began


def universe(port: int) -> tuple[list[str], list[str]]:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    con.request("GET", "/symbols")
    symbols = [r["symbol"] for r in json.loads(con.getresponse().read())["data"]]
    con.request("GET", "/backtests/stdev/equity?limit=10000")
    sessions = [r["date"] for r in json.loads(con.getresponse().read())["data"]]
    con.close()
    return symbols, sessions


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def reading(measured: dict[str, tuple[float, float, float, int]]) -> str:
    (snap_rate, snap_p99, snap_writer, snap_waits) = measured["snapshot"]
    (open_rate, open_p99, open_writer, open_waits) = measured["open-per-request"]
    return (
        f"Reading: snapshots served {snap_rate / open_rate:.1f}x the requests per second of "
        f"opening the file per request, p99 {snap_p99:.0f} ms against {open_p99:.0f} ms, and the "
        f"materialisation beside them took {snap_writer:.0f} s against {open_writer:.0f} s "
        f"({snap_waits} lock waits against {open_waits}); the rest of its slowdown against the "
        "run alone is the load's CPU on the same 2 cores."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--max-load-seconds",
        type=float,
        default=180.0,
        help="stop the load then even if the materialisation is still running",
    )
    args = parser.parse_args()
    header = machine()
    rows, notes = [], []
    measured: dict[str, tuple[float, float, float, int]] = {}  # mode -> req/s, p99, writer s, waits
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        print("building the store (trading-assets main on the sample) ...", flush=True)
        seconds, code, _, tail = materialise(root)
        if code != 0:
            sys.exit(f"trading-assets main failed:\n{tail}")
        alone, code, _, tail = materialise(root)  # the writer's time with no API running
        if code != 0:
            sys.exit(f"trading-assets main failed:\n{tail}")
        print(f"store built in {seconds:.1f} s; a re-run alone takes {alone:.1f} s", flush=True)
        for mode, flags in MODES.items():
            api, port = start_api(root, flags)
            try:
                symbols, sessions = universe(port)
                urls = request_mix(symbols, sessions, args.requests, seed=len(mode))
                outcome: dict = {}
                writer = threading.Thread(
                    target=lambda out=outcome: out.update(run=materialise(root))
                )
                writer.start()
                time.sleep(1.0)  # the run is loading definitions; the load starts with it
                latencies, statuses, wall = load(
                    port, urls, args.clients, writer, args.max_load_seconds
                )
                overlapped = writer.is_alive()
                writer.join()
            finally:
                stop(api)
            w_seconds, w_code, w_waits, w_tail = outcome["run"]
            errors = sum(n for status, n in statuses.items() if status != "200")
            shown = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()) if s != "200")
            rows.append(
                f"| {mode} | {len(latencies):,} | {args.clients} | {errors}"
                f"{f' ({shown})' if shown else ''} | {percentile(latencies, 50):.1f} | "
                f"{percentile(latencies, 99):.1f} | {max(latencies):.0f} | "
                f"{len(latencies) / wall:,.0f} | "
                f"{'ok' if w_code == 0 else 'FAILED'}, {w_seconds:.1f} s "
                f"(alone {alone:.1f} s), {w_waits} lock wait(s)"
                f"{', finished after the load stopped' if overlapped else ''} |"
            )
            measured[mode] = (len(latencies) / wall, percentile(latencies, 99), w_seconds, w_waits)
            if w_code != 0:
                notes.append(f"writer with {mode}: {w_tail}")
            print(rows[-1], flush=True)
    lines = [
        "## Read API under load with a writer (`bench_api.py`)",
        "",
        f"`python benchmarks/bench_api.py --requests {args.requests} --clients {args.clients}`"
        f" on {header}. The real `trading-assets api` process on 127.0.0.1 over the bundled "
        "sample's store, each of "
        f"{args.clients} client threads with its own keep-alive connection, while `trading-assets "
        "main` re-materialises the whole sample into the same DuckDB file (the load starts 1 s "
        f"after it and goes on until it has finished, at least {args.requests:,} requests). "
        "Request mix: /prices and /indicators of a random symbol over a random quarter "
        "(60 %), /environment, /watchlist, /journal/positions, /performance, a year of "
        "/backtests/<s>/equity, /health. Latency as the client sees it (client, server and "
        "writer share the 2 cores).",
        "",
        "| reading the file | requests | clients | errors | p50 ms | p99 ms | max ms | requests/s "
        "| the materialisation |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "`snapshot` is what `trading-assets api` does: it answers from a private copy of the file "
        "taken under a read-only connection only when the file changed and no writer holds it, so "
        "a writer's lock never fails a request (it sees the tables as of the last copy) and the "
        "writer waits at most for one copy. `open-per-request` opens the file for every request: "
        "each open takes DuckDB's shared lock, so the writer keeps finding the file held, and "
        "requests made while the writer holds it wait for it (up to 10 s, then 503).",
        "",
        reading(measured) + f" Load average {os.getloadavg()[0]:.2f} at the end (other jobs share "
        "this VM: compare rows of one run).",
        *notes,
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
