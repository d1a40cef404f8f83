"""The PNG gallery of generated samples: a grid of images (2D) or, per volume, its three orthogonal
mid-planes and a maximum-intensity projection (3D). Grey levels per modality: a soft-tissue-and-bone CT
window, an asinh stretch for astronomical counts (faint sources stay visible), percentiles otherwise."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ldm_med.volume import Volume

CT_WINDOW = (-400.0, 600.0)


def display(img: np.ndarray, modality: str) -> tuple[np.ndarray, float, float]:
    """``(image to show, vmin, vmax)`` for one plane."""
    if modality == "CT":
        return img, *CT_WINDOW
    if modality == "ASTRO":
        sky = float(np.median(img))
        img = np.arcsinh((img - sky) / 10.0)
    lo, hi = np.percentile(img, [1.0, 99.7])
    return img, float(lo), float(hi if hi > lo else lo + 1.0)


def save_gallery(volumes: list[Volume], path: str | Path, title: str = "",
                 labels: list[str] | None = None) -> Path:
    """Write the gallery of ``volumes`` (all 2D, one slice each, or all 3D) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    labels = labels or [f"sample {i}" for i in range(len(volumes))]
    flat = all(v.data.shape[2] == 1 for v in volumes)
    if flat:
        cols = min(len(volumes), 4)
        rows = -(-len(volumes) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, vol, label in zip(axes.ravel(), volumes, labels):
            _show(ax, vol.data[:, :, 0], vol, (0, 1), label)
    else:
        fig, axes = plt.subplots(len(volumes), 4, figsize=(10.4, 3.0 * len(volumes)), squeeze=False)
        for row, (vol, label) in enumerate(zip(volumes, labels)):
            d = vol.data
            planes = [(d[:, :, d.shape[2] // 2], (0, 1), "axial mid-plane"),
                      (d[:, d.shape[1] // 2, :], (0, 2), "coronal mid-plane"),
                      (d[d.shape[0] // 2, :, :], (1, 2), "sagittal mid-plane"),
                      (d.max(axis=2), (0, 1), "maximum-intensity projection")]
            for col, (img, axes_used, name) in enumerate(planes):
                _show(axes[row, col], img, vol, axes_used, name)
            axes[row, 0].set_ylabel(label, fontsize=8)  # the row's sample, beside its planes
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path


def _show(ax, img: np.ndarray, vol: Volume, axes_used: tuple[int, int], label: str) -> None:
    shown, lo, hi = display(img, str(vol.metadata.get("modality", "")))
    sp = vol.spacing
    ax.imshow(shown.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest",
              aspect=sp[axes_used[1]] / sp[axes_used[0]])
    ax.set_title(label, fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
