"""Shared by the benchmarks: the machine they ran on, and writing one section of docs/benchmarks.md."""

import os
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
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
