"""``ldm-med info`` and ``ldm-med convert``."""
from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ldm_med.cli import main

sys.path.insert(0, str(Path(__file__).parent / "io"))
from dicom_synth import PATIENT_ID, PATIENT_NAME, phantom, write_ct_series  # noqa: E402

DICOMDIR_TESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


def test_info_lists_series_missing_slices_and_skips(capsys):
    assert main(["info", str(DICOMDIR_TESTS)]) == 0
    out = capsys.readouterr().out
    assert '"Routine Brain"' in out
    assert "missing slices: 161 of 165 (k = 1-161, 0-based)" in out
    assert "<- read by default (largest)" in out
    assert "DICOMDIR: index of a DICOM file-set, not an image (8 files):" in out
    assert "localizer: ImageType LOCALIZER (2 files):" in out
    assert "98892001/CT2N/6293" in out  # paths relative to the folder
    for secret in ("Citizen", "Jan", "12345678", "Doe", "Archibald", "98890234", "77654033"):
        assert secret not in out


def test_info_with_series_reads_pixels(capsys):
    assert main(["info", str(DICOMDIR_TESTS), "--series", "...530851.28319.0.2"]) == 0
    out = capsys.readouterr().out
    assert "rescale: slope 1, intercept -1024, units HU" in out
    assert "intensity range:" in out


def test_info_on_bad_input_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "empty") in err
    assert main(["info", str(tmp_path / "absent")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    assert main(["info", str(tmp_path / "text")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no DICOM image series found" in err


def test_info_nifti(capsys):
    assert main(["info", str(NIB_DATA / "example4d.nii.gz")]) == 0
    assert "pass --volume-index N (0..1)" in capsys.readouterr().out
    assert main(["info", str(NIB_DATA / "example4d.nii.gz"), "--volume-index", "1"]) == 0
    out = capsys.readouterr().out
    assert "volume: 128 x 96 x 24 (volume index 1)" in out and "modality: MR" in out
    assert main(["info", str(NIB_DATA / "anatomical.nii")]) == 0
    out = capsys.readouterr().out
    assert "orientation: LAS" in out and "spacing: 2 x 2 x 2 mm" in out
    assert "intensity range: -610 .. 30393" in out


def test_convert_writes_a_loadable_nifti(tmp_path, capsys):
    hu = phantom((16, 12, 10))
    write_ct_series(tmp_path / "dcm", hu, drop=(4, 5), shuffle=True)
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(tmp_path / "dcm"), str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 of 10 slices were missing and are stored as zeros: k = 4,5" in text
    assert PATIENT_NAME not in text and PATIENT_ID not in text
    img = nib.load(out)
    assert img.shape == (16, 12, 10)
    np.testing.assert_array_equal(np.asarray(img.dataobj)[:, :, 6], hu[:, :, 6])
    assert int(img.header["sform_code"]) == 1


def test_convert_bad_input_exits_2(tmp_path, capsys):
    assert main(["convert", str(NIB_DATA / "example4d.nii.gz"), str(tmp_path / "o.nii")]) == 2
    assert "--volume-index" in capsys.readouterr().err
    assert main(["convert", str(NIB_DATA / "example4d.nii.gz"), str(tmp_path / "o.nii"),
                 "--volume-index", "0"]) == 0
    assert nib.load(tmp_path / "o.nii").shape == (128, 96, 24)
    capsys.readouterr()
    assert main(["convert", str(DICOMDIR_TESTS), str(tmp_path / "o.mha")]) == 2
    assert ".nii or .nii.gz" in capsys.readouterr().err


def _nifti_with_bad_slices(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).normal(300, 50, (12, 10, 8)).astype(np.float32)
    data[:, :, 2] = 0
    data[3, 3, 5] = np.nan
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), path)
    return path


def test_info_nifti_flags_slices_that_look_missing(tmp_path, capsys):
    pytest.importorskip("ldm_med.masks")
    assert main(["info", str(_nifti_with_bad_slices(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "slices that look missing (blank, constant or NaN): 2 (k = 2,5, 0-based)" in out
    assert "non-finite voxels: 1" in out



def test_convert_never_replaces_a_file_without_overwrite(tmp_path, capsys):
    out = tmp_path / "o.nii"
    out.write_bytes(b"keep me")
    args = ["convert", str(NIB_DATA / "anatomical.nii"), str(out)]
    assert main(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0 and nib.load(out).shape[:2] == (33, 41)
    assert main(["convert", str(out), str(out), "--overwrite"]) == 2
    assert "overwrite the input" in capsys.readouterr().err
