"""Benchmark scripts write their results into docs as marked sections, one per script (and name)."""
from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, text: str, marker: str, *, first: bool = False) -> None:
    """Replace the section ``marker`` of ``path`` (between ``<!-- marker: begin -->`` and its end) with
    ``text``, keeping the rest; a new section goes at the end (at the start with ``first``)."""
    begin, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
    doc = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = block + "\n\n" + doc if first else doc.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
