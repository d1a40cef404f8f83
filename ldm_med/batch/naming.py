"""Names and UIDs for batch outputs: deterministic, and never built from raw tag values.

* ``derive_uid(*parts)``: a DICOM UID in the ``2.25`` arc (ISO/IEC 9834-8: a UUID as an integer)
  from a SHA-256 of the parts, so a re-run over the same source gives the same UIDs.
* ``series_key(info)``: 16 hex digits identifying one source series (its SeriesInstanceUID and the
  images in it), the name of its output folder, its manifest row and its report entry.
* ``safe_name(text)``: a short ``[A-Za-z0-9_-]`` fragment for file names (``../../x``, absolute paths,
  300-character values all become harmless).
"""
from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def digest(*parts: object) -> str:
    """SHA-256 hex digest of the parts, separated so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()


def derive_uid(*parts: object) -> str:
    """A deterministic UID ``2.25.<int>`` (at most 64 characters) from the parts."""
    return "2.25." + str(int(digest(*parts)[:32], 16))  # 128 bits: at most 39 digits


def series_key(info) -> str:
    """16 hex digits for one ``SeriesInfo``: its UID and the SOP instances (or files) in it."""
    members = sorted(str(r.sop_uid or r.path) for r in info.slots if r is not None) or \
        sorted(str(p) for p in info.files)
    return digest("series", info.uid, *members)[:16]


def safe_name(text: object, max_len: int = 16, default: str = "x") -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]``, at most ``max_len`` characters (``default`` if empty)."""
    out = _UNSAFE.sub("_", str(text or "")).strip("_-")[:max_len].strip("_-")
    return out or default


def indices_text(indices) -> str:
    """``'3,7,10-14'`` for 0-based indices (runs of 3 or more become ranges); ``'none'`` if empty."""
    idx = sorted({int(i) for i in indices})
    parts, i = [], 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts += [f"{idx[i]}-{idx[j]}"] if j - i >= 2 else [str(v) for v in idx[i:j + 1]]
        i = j + 1
    return ",".join(parts) or "none"
