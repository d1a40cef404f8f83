"""The napari reader opens the new formats (no viewer needed: the reader returns layer data)."""
from __future__ import annotations

import numpy as np
import pytest

from ldm_med.io import save_volume_as
from ldm_med.volume import Volume


@pytest.mark.parametrize("suffix", [".mrc", ".fits.gz", ".tiff"])
def test_reader_opens_the_file_with_its_spacing(tmp_path, suffix):
    from napari_plugin._reader import get_reader

    vol = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), np.diag([0.5, 0.75, 2.0, 1.0]),
                 metadata={"modality": "EM"})
    path = save_volume_as(vol, tmp_path / f"map{suffix}", synthetic=True)
    reader = get_reader(str(path))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and kwargs["name"] == "map"
    assert sorted(data.shape) == [3, 4, 5]
    assert sorted(np.round(kwargs["scale"], 6).tolist()) == [0.5, 0.75, 2.0]
    assert kwargs["metadata"]["synthetic"] is True
    assert get_reader(str(tmp_path / "absent.mrc")) is None


def test_reader_takes_greyscale_png_and_leaves_colour_to_napari(tmp_path):
    from PIL import Image

    from napari_plugin._reader import get_reader

    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert get_reader(str(tmp_path / "grey.png")) is not None
    assert get_reader(str(tmp_path / "rgb.png")) is None
