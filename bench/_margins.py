"""Summaries of per-cell PSNR margins over the best plain interpolation, shared by the benchmarks that
compare variants of the pipeline cell by cell (``refiners.py``, ``check_views.py``)."""
from __future__ import annotations

import numpy as np


def kind_summary(groups: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
    """Markdown rows: per kind (``groups``: kind -> rows with a ``pattern`` and a margin per label key),
    and per label (key -> column title), the mean margin, the x4 mean, the worst cell and the number of
    cells below -0.2 dB (the contract's tolerance)."""
    lines = ["| kind | " + " | ".join(f"{title}: mean / x4 mean / worst / cells < -0.2 dB"
                                     for title in labels.values()) + " |",
             "|---|" + "---|" * len(labels)]
    for kind, rows in groups.items():
        if not rows:
            continue
        cells = []
        for key in labels:
            v = np.array([r[key] for r in rows])
            x4 = [r[key] for r in rows if r["pattern"] == "x4"]
            cells.append(f"{v.mean():+.2f} / {np.mean(x4) if x4 else float('nan'):+.2f} / {v.min():+.2f} / "
                         f"{int((v < -0.2).sum())}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines
