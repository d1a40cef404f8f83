"""Each sample opens through napari's File > Open Sample (the manifest), with geometry and gaps."""
from __future__ import annotations

import numpy as np
import pytest

EXPECTED = {  # key: (layer name, shape (axial: slices first), missing slices, modality)
    "ct_phantom": ("CT phantom", (20, 96, 96), [8, 15, 16], "CT"),
    "mr_phantom": ("MR phantom", (40, 128, 128), [9, 18, 19, 29], "MR"),
    "molecule": ("molecular density map", (64, 64, 64), [], "EM"),
    "astro_cube": ("astronomical cube", (24, 128, 128), [], "ASTRO"),
}


@pytest.mark.viewer
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_sample_opens(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample("ldm-med", key)
    name, shape, missing, modality = EXPECTED[key]
    (layer,) = viewer.layers
    assert layer.name == name and layer.data.shape == shape
    assert layer.metadata["modality"] == modality  # picks the refiner (and, for cubes, the second view)
    assert layer.metadata["missing"] == missing
    assert np.all(np.asarray(layer.scale) > 0)
    acquired = np.asarray(layer.data)[layer.metadata["acquired"]]
    assert np.isfinite(acquired).all() and acquired.std() > 0


def test_samples_without_the_files(monkeypatch):
    """An installed package without ``sample_data/`` beside it generates the same volumes."""
    from napari_plugin import _sample_data

    monkeypatch.setattr(_sample_data, "_sample_dir", lambda: None)
    (data, kwargs, _), = _sample_data.ct_phantom()
    assert data.shape == (20, 96, 96) and kwargs["metadata"]["missing"] == [8, 15, 16]
    (data, kwargs, _), = _sample_data.mr_phantom()
    assert data.shape == (40, 128, 128) and kwargs["metadata"]["missing"] == [9, 18, 19, 29]
    (data, kwargs, _), = _sample_data.astro_cube()
    assert data.shape == (24, 128, 128) and kwargs["metadata"]["modality"] == "ASTRO"
