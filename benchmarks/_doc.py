"""Write one benchmark's section into docs/benchmarks.md, leaving the other sections as they are."""

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
