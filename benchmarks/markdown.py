"""Writing one benchmark's section of docs/benchmarks.md without touching the others."""

from __future__ import annotations

from pathlib import Path


def replace_section(output: Path, heading: str, text: str) -> None:
    """Replace the section that starts with `heading` in `output`, or append it.

    `text` must start with `heading`. Sections are `## ` headings; the ones
    before and after this section are kept as they are.
    """
    output = Path(output)
    previous = output.read_text() if output.exists() else "# Benchmarks\n\n"
    tail = ""
    if heading in previous:
        head, _, rest = previous.partition(heading)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        previous = head.rstrip() + "\n\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(previous.rstrip() + "\n\n" + text.rstrip() + "\n" + tail)
