"""NIfTI reading (nibabel's shipped files) and writing."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ldm_med.errors import InputError
from ldm_med.io import load_volume, save_nifti
from ldm_med.io.nifti import guess_modality
from ldm_med.volume import Volume

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


def test_4d_needs_a_volume_index():
    path = NIB_DATA / "example4d.nii.gz"
    with pytest.raises(InputError) as err:
        load_volume(path)
    msg = str(err.value)
    assert "--volume-index" in msg and "example4d.nii.gz" in msg and "(128, 96, 24, 2)" in msg
    img = nib.load(path)
    for index in (0, 1):
        vol = load_volume(path, volume_index=index)
        assert vol.shape == (128, 96, 24)
        np.testing.assert_array_equal(vol.data, np.asarray(img.dataobj[..., index], np.float32))
        assert vol.metadata["volume_index"] == index
    with pytest.raises(InputError, match="out of range 0..1"):
        load_volume(path, volume_index=2)


def test_anatomical_keeps_nibabels_affine():
    path = NIB_DATA / "anatomical.nii"
    img = nib.load(path)
    vol = load_volume(path)
    assert vol.shape == (33, 41, 25)
    np.testing.assert_array_equal(vol.affine, img.affine)
    np.testing.assert_array_equal(vol.data, img.get_fdata(dtype=np.float32))
    assert vol.metadata["modality"] == "MR" and vol.metadata["modality_guessed"]
    assert vol.acquired.all() and vol.slice_axis == 2
    with pytest.raises(InputError, match="image is 3D"):
        load_volume(path, volume_index=1)


def test_2d_and_singleton_4d_images(tmp_path):
    nib.save(nib.Nifti1Image(np.arange(12, dtype=np.int16).reshape(3, 4), np.eye(4)),
             tmp_path / "flat.nii")
    assert load_volume(tmp_path / "flat.nii").shape == (3, 4, 1)
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), np.eye(4)), tmp_path / "t1.nii")
    assert load_volume(tmp_path / "t1.nii").shape == (3, 4, 5)


def test_modality_guess():
    rng = np.random.default_rng(0)
    ct = np.where(rng.random((20, 20, 5)) < 0.3, -1000.0, 40.0)
    assert guess_modality(ct) == "CT"
    assert guess_modality(rng.random((20, 20, 5)) * 800) == "MR"
    assert guess_modality(np.zeros((4, 4, 4))) == "unknown"
    assert guess_modality(np.full((4, 4, 4), np.nan)) == "unknown"


def oblique_volume(data: np.ndarray) -> Volume:
    aff = np.eye(4)
    c, s = np.cos(0.4), np.sin(0.4)
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.7, 0.8, 2.5])
    aff[:3, 3] = [12.5, -30.25, 40.0]
    return Volume(data=data, affine=aff, acquired=np.arange(data.shape[2]) % 4 != 1,
                  metadata={"modality": "CT"})


@pytest.mark.parametrize("integer", [True, False])
def test_save_and_reload(tmp_path, integer):
    rng = np.random.default_rng(1)
    data = rng.integers(-1024, 2000, (10, 9, 8)).astype(np.float32)
    if not integer:
        data += 0.25
    vol = oblique_volume(data)
    out = tmp_path / "sub" / "vol.nii.gz"
    save_nifti(vol, out)
    img = nib.load(out)
    assert img.get_data_dtype() == (np.int16 if integer else np.float32)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_sform(), vol.affine, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), vol.affine, atol=1e-4)
    back = load_volume(out)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    np.testing.assert_array_equal(back.acquired, vol.acquired)  # kept in the ldm-med extension
    assert back.metadata["modality"] == "CT" and not back.metadata["modality_guessed"]
    assert [p.name for p in out.parent.iterdir()] == ["vol.nii.gz"]


def test_write_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "vol.nii"
    save_nifti(oblique_volume(np.ones((4, 4, 4), np.float32)), out)
    before = out.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(oblique_volume(np.zeros((4, 4, 4), np.float32)), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["vol.nii"]


def test_bad_paths(tmp_path):
    with pytest.raises(InputError, match=".nii or .nii.gz"):
        save_nifti(oblique_volume(np.ones((2, 2, 2), np.float32)), tmp_path / "x.mha")
    with pytest.raises(InputError, match="no such file"):
        load_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="bad.nii.gz"):
        load_volume(tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="DICOM input only"):
        load_volume(NIB_DATA / "anatomical.nii", series="1")
