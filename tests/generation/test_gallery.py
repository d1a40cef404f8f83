"""The PNG gallery: a grid for 2D samples, three mid-planes and a MIP per 3D sample, never blank."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldm_med.pipelines.gallery import save_gallery
from ldm_med.volume import Volume


@pytest.mark.parametrize("shape, modality",
                         [((24, 24, 1), "CT"), ((24, 20, 16), "EM"), ((24, 24, 8), "ASTRO")])
def test_gallery_is_written_and_not_blank(tmp_path, shape, modality):
    rng = np.random.default_rng(0)
    vols = [Volume(rng.normal(100, 30, shape).astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0]),
                   metadata={"modality": modality}) for _ in range(3)]
    path = save_gallery(vols, tmp_path / "g.png", title="SYNTHETIC test")
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.std() > 10
    wide = img.shape[1] / img.shape[0]
    assert (wide > 2.0) if shape[2] == 1 else (wide < 2.0)  # a row of images vs. one row per volume
    assert not list(tmp_path.glob(".*.tmp.png"))
