"""Each bench script owns one section of bench/RESULTS.md, replaced in place when it re-runs."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str, title: str, text: str, results: Path = RESULTS) -> None:
    """Replace (or append) the block between ``<!-- section:start -->`` and ``:end -->``."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    body = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    block = f"{start}\n## {title}\n\n{text}\n{end}"
    if start in body:
        body = body[:body.index(start)] + block + body[body.index(end) + len(end):]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    results.write_text(body, encoding="utf-8")
