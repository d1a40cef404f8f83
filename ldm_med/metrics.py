"""Image quality on chosen slices: PSNR, SSIM and MAE, all in the volume's own units.

``data_range`` defaults to ``truth.max() - truth.min()`` over the whole truth volume (finite voxels), so a
metric does not change when more or fewer slices are evaluated. SSIM is the mean of 2D SSIMs
(scikit-image) over the evaluated slices, in the plane of each slice.
"""
from __future__ import annotations

import numpy as np


def _select(volume: np.ndarray, slices: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(np.asarray(volume, dtype=np.float64), axis, 0)[np.asarray(slices)]


def default_range(truth: np.ndarray) -> float:
    finite = truth[np.isfinite(truth)]
    rng = float(finite.max() - finite.min()) if finite.size else 0.0
    return rng if rng > 0 else 1.0


def psnr(truth: np.ndarray, estimate: np.ndarray, slices: np.ndarray, axis: int = 2,
         data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio (dB) over ``slices`` (indices or bool mask) along ``axis``."""
    data_range = default_range(truth) if data_range is None else data_range
    t, e = _select(truth, slices, axis), _select(estimate, slices, axis)
    mse = float(np.mean((t - e) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def mae(truth: np.ndarray, estimate: np.ndarray, slices: np.ndarray, axis: int = 2) -> float:
    """Mean absolute error over ``slices`` along ``axis``, in the volume's units."""
    return float(np.mean(np.abs(_select(truth, slices, axis) - _select(estimate, slices, axis))))


def ssim(truth: np.ndarray, estimate: np.ndarray, slices: np.ndarray, axis: int = 2,
         data_range: float | None = None) -> float:
    """Mean 2D SSIM over ``slices`` along ``axis``."""
    from skimage.metrics import structural_similarity

    data_range = default_range(truth) if data_range is None else data_range
    t, e = _select(truth, slices, axis), _select(estimate, slices, axis)
    win = max(3, min(7, *t.shape[1:]) // 2 * 2 - 1)  # odd, no larger than the slice
    return float(np.mean([structural_similarity(a, b, data_range=data_range, win_size=win)
                          for a, b in zip(t, e)]))


def evaluate(truth: np.ndarray, estimate: np.ndarray, slices: np.ndarray, axis: int = 2) -> dict[str, float]:
    """PSNR, SSIM and MAE on the given slices."""
    return {"psnr": psnr(truth, estimate, slices, axis), "ssim": ssim(truth, estimate, slices, axis),
            "mae": mae(truth, estimate, slices, axis)}
