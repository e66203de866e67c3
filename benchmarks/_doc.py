"""Shared by the benchmarks: the machine they ran on, writing one section of docs/benchmarks.md,
where the shared market data is (the tests' own rule: trading_assets_tests/shared_data.py), and
building a store from it with ``trading-assets main``."""

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, not an installed copy, and trading_assets_tests

from trading_assets_tests.shared_data import (  # noqa: E402
    PRICES_FILE,
    missing_shared_data,
    shared_market_dir,
)

DOC = ROOT / "docs" / "benchmarks.md"
# The shared data's full range: the first partition and the last session of the full store.
FULL_START, FULL_END = "2000-01-03", "2025-07-23"
HEADER = "# Benchmarks\n\nSpeed and memory targets are measured here, never asserted in tests. Each section says its command and machine.\n"


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace the section whose '## ' heading matches the first line of ``text`` (or append it)."""
    heading = text.splitlines()[0]
    assert heading.startswith("## "), heading
    body = doc.read_text() if doc.exists() else HEADER
    parts = body.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    sections = [s for s in sections if s.splitlines()[0] != heading] + [text.strip() + "\n"]
    doc.write_text(head.rstrip() + "\n\n" + "\n\n".join(s.strip() + "\n" for s in sorted(sections)))


def publish(lines: list[str], write_doc: bool) -> None:
    """Print a benchmark's section; with --write-doc also replace it in docs/benchmarks.md."""
    text = "\n".join(lines)
    print(text)
    if write_doc:
        write_section(text)


def machine() -> str:
    """Cores, CPU model, RAM, OS, Python and the load average now: what a reader needs to compare."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start"
    )


def shared_market() -> Path:
    """The shared market data directory ($TRADING_ASSETS_SHARED_DATA, else ../shared/data/market).
    Exits with the reason, naming both, when its prices file is missing."""
    problem = missing_shared_data()
    if problem:
        sys.exit(problem)
    return shared_market_dir()


def shared_prices_file() -> Path:
    """The shared prices_daily.parquet (see shared_market)."""
    return shared_market() / PRICES_FILE


def run_main(home: Path, db: Path, prices: Path, universe: Path, start: str, end: str) -> float:
    """Seconds of ``trading-assets main --start --end`` as a user runs it (a subprocess, files source,
    DAGSTER_HOME ``home``, partitions from FULL_START); exits with its output if it fails."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TRADING_ASSETS_DUCKDB_PATH": str(db),
        "TRADING_ASSETS_PRICE_SOURCE": "files",
        "TRADING_ASSETS_PRICES_PATH": str(prices),
        "TRADING_ASSETS_UNIVERSE": str(universe),
        "TRADING_ASSETS_START_DATE": FULL_START,
    }
    cmd = [sys.executable, "-m", "trading_assets.cli", "main", "--start", start, "--end", end]
    began = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return seconds


def first_call_seconds(code: str, cache_dir: str | None) -> float:
    """Run ``code`` (which prints its own timing last) in a fresh interpreter, with numba's cache
    in ``cache_dir`` (None: the default beside the modules); the seconds it printed."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, env=env, check=True)  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])
