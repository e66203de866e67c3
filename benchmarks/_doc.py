"""Shared by the benchmarks: the machine they ran on, writing one section of docs/benchmarks.md, and
where the shared market data is (the tests' own rule: trading_assets_tests/shared_data.py)."""

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, not an installed copy, and trading_assets_tests

from trading_assets_tests.shared_data import (  # noqa: E402
    PRICES_FILE,
    missing_shared_data,
    shared_market_dir,
)

DOC = ROOT / "docs" / "benchmarks.md"
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
