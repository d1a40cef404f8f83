"""Inputs the coverage-guided fuzzer (bench/fuzz_atheris.py) found, kept as regressions."""
from __future__ import annotations

import struct
import tracemalloc

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
