"""PNG figures: orthogonal views of several volumes side by side (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def orthogonal_views(panels: dict[str, np.ndarray], path: str | Path, spacing=(1.0, 1.0, 1.0),
                     title: str = "", cmap_for: dict[str, str] | None = None,
                     window: tuple[float, float] | None = None,
                     centre: tuple[int, int, int] | None = None) -> Path:
    """Save a grid: one row per panel (name -> ``(X, Y, Z)`` volume), columns = the three mid-planes.

    Planes are shown with their physical aspect ratio (``spacing`` in mm). ``window`` fixes the grey
    levels of every non-special panel (default: 1st-99th percentile of the first panel). ``centre``
    picks the planes (default: the middle of each axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap_for = cmap_for or {}
    first = next(iter(panels.values()))
    lo, hi = window or tuple(np.percentile(first, [1, 99]))
    centre = list(centre) if centre is not None else [s // 2 for s in first.shape]
    planes = [("axis 0", 0), ("axis 1", 1), ("axis 2", 2)]
    fig, axes = plt.subplots(len(panels), 3, figsize=(9, 2.9 * len(panels)), squeeze=False)
    for row, (name, vol) in enumerate(panels.items()):
        for col, (label, axis) in enumerate(planes):
            img = np.take(vol, centre[axis], axis=axis)
            sp = [s for i, s in enumerate(spacing) if i != axis]
            cmap = cmap_for.get(name, "gray")
            vmin, vmax = (lo, hi) if cmap == "gray" else (0, max(float(np.percentile(vol, 99.5)), 1e-6))
            ax = axes[row, col]
            ax.imshow(img.T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect=sp[1] / sp[0],
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=11)
            if row == 0:
                ax.set_title(f"{label}, index {centre[axis]}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
