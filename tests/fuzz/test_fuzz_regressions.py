"""Inputs the coverage-guided fuzzer (bench/fuzz_atheris.py) found, kept as regressions."""
from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ldm_med.errors import InputError
from ldm_med.io import load_volume


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_extension_declaring_more_than_the_file_is_refused_unread(tmp_path, suffix):
    img = nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"hello world!!!!"))
    raw = tmp_path / "raw.nii"
    nib.save(img, str(raw))
    data = bytearray(raw.read_bytes())
    struct.pack_into("<i", data, 352, 469764096)  # the first extension's esize: 448 MiB
    path = tmp_path / f"bad{suffix}"
    if suffix == ".nii.gz":
        import gzip

        path.write_bytes(gzip.compress(bytes(data)))
    else:
        path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="extension declares") as err:
            load_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(err.value) and peak < 64 << 20


REGRESSIONS = Path(__file__).parent / "regressions"


@pytest.mark.parametrize("name, message", [("idat_length.png", "corrupt PNG"),
                                           ("tag_past_end.tif", "corrupt TIFF")])
def test_saved_fuzzer_inputs_are_refused_fast_and_small(tmp_path, name, message):
    """PNG: a damaged IDAT length made Pillow allocate 609 MiB; TIFF: a damaged directory kept
    tifffile busy for minutes."""
    import shutil
    import time

    path = tmp_path / name
    shutil.copy(REGRESSIONS / name, path)
    start = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=message) as err:
            load_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(err.value) and peak < 64 << 20 and time.perf_counter() - start < 10
