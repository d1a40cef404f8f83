"""Test volumes shared by the inpainting tests (imported as a plain module, like tests/io/dicom_synth)."""
from __future__ import annotations

import numpy as np


def smooth_volume(shape=(24, 20, 22), seed=0) -> np.ndarray:
    """Slices-first volume with smooth, non-linear structure along every axis."""
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    rng = np.random.default_rng(seed)
    f = sum(np.sin(2 * np.pi * (a * x + b * y + c * z) + p) for a, b, c, p in rng.uniform(0.5, 2.0, (4, 4)))
    return (f / 4).astype(np.float32)
