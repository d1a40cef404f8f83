"""The output rule every writing command shares: never the input, never one file twice, never an existing
file without ``--overwrite``."""
from __future__ import annotations

from pathlib import Path

from ldm_med.errors import InputError


def check_outputs(source: str, outputs: list[str], overwrite: bool) -> None:
    """``InputError`` when an output is the input, two outputs are one file, or an output exists and
    ``overwrite`` is off (nothing is replaced without ``--overwrite``)."""
    seen: set[Path] = set()
    src = Path(source).resolve() if Path(source).exists() else None
    for out in outputs:
        resolved = Path(out).resolve()
        if src is not None and resolved == src:
            raise InputError(f"{out}: output would overwrite the input")
        if resolved in seen:
            raise InputError(f"{out}: named twice among the outputs")
        seen.add(resolved)
        if Path(out).exists() and not overwrite:
            raise InputError(f"{out}: exists; pass --overwrite to replace it")
