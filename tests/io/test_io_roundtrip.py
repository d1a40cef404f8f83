"""DICOM -> Volume -> NIfTI -> nibabel: world coordinates agree with the DICOM headers."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_synth import phantom, rotation, write_ct_series

from ldm_med.io import load_volume, save_nifti

DICOMDIR_TESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"


def header_world_ras(path: Path, i: float, j: float) -> np.ndarray:
    """IPP + i * row_cos * dx + j * col_cos * dy from the file's own header, LPS -> RAS."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    lps = np.array(ds.ImagePositionPatient, dtype=float) + i * iop[:3] * dx + j * iop[3:] * dy
    return lps * [-1, -1, 1]


@pytest.mark.parametrize("case", ["oblique", "tilted"])
def test_synthetic_series_world_coordinates(tmp_path, case):
    hu = phantom((20, 16, 9))
    r = rotation((1.0, -0.4, 0.7), 33.0)
    kwargs = {"iop": np.concatenate([r[:, 0], r[:, 1]])} if case == "oblique" else \
        {"tilt": (0.0, 0.45, 0.0)}
    w = write_ct_series(tmp_path / "dcm", hu, drop=(2, 5), shuffle=True,
                        pixel_spacing=(0.9, 0.6), dz=3.0, **kwargs)
    vol = load_volume(tmp_path / "dcm")
    save_nifti(vol, tmp_path / "out.nii.gz")
    img = nib.load(tmp_path / "out.nii.gz")
    for k, path in w.paths.items():
        for i, j in ((0, 0), (19, 0), (0, 15), (11, 7)):
            world = (img.affine @ [i, j, k, 1])[:3]
            np.testing.assert_allclose(world, header_world_ras(path, i, j), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(img.dataobj)[:, :, [0, 8]], hu[:, :, [0, 8]])


def test_real_gap_series_world_coordinates(tmp_path):
    vol = load_volume(DICOMDIR_TESTS, series="...530851.28319.0.2")  # "Routine Brain"
    save_nifti(vol, tmp_path / "brain.nii")
    img = nib.load(tmp_path / "brain.nii")
    for path in sorted((DICOMDIR_TESTS / "77654033" / "CT2").iterdir()):
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        k = vol.metadata["sop_instance_uids"].index(uid)
        for i, j in ((0, 0), (15, 15), (3, 9)):
            np.testing.assert_allclose((img.affine @ [i, j, k, 1])[:3],
                                       header_world_ras(path, i, j), atol=1e-3)
