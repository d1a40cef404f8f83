"""The bundled sample_data/: present, small, readable, and reproducible from make_samples.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
NIFTI = ["ct_phantom.nii.gz", "mr_phantom.nii.gz", "molecule.nii.gz", "astro_field.nii.gz"]


def _make_samples_module():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_present_and_small():
    for name in NIFTI:
        assert (SAMPLES / name).is_file(), name
    dcm = sorted((SAMPLES / "ct_gap_dicom").glob("*.dcm"))
    assert len(dcm) == 17
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 3_000_000


def test_ct_nifti_is_int16_hounsfield():
    img = nib.load(SAMPLES / "ct_phantom.nii.gz")
    assert img.shape == (128, 128, 48) and img.get_data_dtype() == np.int16
    assert img.header.get_dim_info()[2] == 2
    data = np.asanyarray(img.dataobj)
    assert data.min() >= -1024 and data.max() <= 3071
    assert "".join(nib.aff2axcodes(img.affine)) == "LPS"


def test_dicom_series_is_proper_ct_with_three_gaps():
    files = sorted((SAMPLES / "ct_gap_dicom").glob("*.dcm"))
    headers = [pydicom.dcmread(f) for f in files]
    assert {h.SeriesInstanceUID for h in headers} == {headers[0].SeriesInstanceUID}
    assert len({h.SOPInstanceUID for h in headers}) == len(headers)
    h = headers[0]
    assert h.Modality == "CT" and h.SOPClassUID == pydicom.uid.CTImageStorage
    assert float(h.RescaleIntercept) == -1024 and float(h.RescaleSlope) == 1
    assert [float(v) for v in h.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    z = np.array(sorted(float(x.ImagePositionPatient[2]) for x in headers))
    k = np.rint((z - z[0]) / 2.5).astype(int)
    assert sorted(set(range(20)) - set(k.tolist())) == [8, 15, 16]
    hu = h.pixel_array.astype(np.float64) * float(h.RescaleSlope) + float(h.RescaleIntercept)
    assert h.pixel_array.shape == (96, 96) and -1024 <= hu.min() and hu.max() < 3072


@pytest.mark.slow
def test_regenerating_reproduces_the_bundled_files(tmp_path):
    module = _make_samples_module()
    module.main(tmp_path)
    for name in NIFTI:
        new = nib.load(tmp_path / name).get_fdata()
        old = nib.load(SAMPLES / name).get_fdata()
        assert new.shape == old.shape
        # identical but for rare last-digit rounding differences between machines
        assert np.mean(new != old) < 1e-3, name
    old = sorted(p.name for p in (SAMPLES / "ct_gap_dicom").glob("*.dcm"))
    assert sorted(p.name for p in (tmp_path / "ct_gap_dicom").glob("*.dcm")) == old
    a = pydicom.dcmread(SAMPLES / "ct_gap_dicom" / old[0])
    b = pydicom.dcmread(tmp_path / "ct_gap_dicom" / old[0])
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
