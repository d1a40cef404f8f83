"""Hostile files through the command line: one line on stderr naming the file, exit code 2.

The first four are the failures found by the first fuzz run (issue 14): each was a traceback or a
multi-terabyte allocation before the readers checked their input.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ldm_med.cli import main

sys.path.insert(0, str(Path(__file__).parent / "io"))
from dicom_synth import phantom, write_ct_series  # noqa: E402
from hostile import corrupt_vr, nan_affine_nifti, patch_nifti, small_nifti_bytes, write  # noqa: E402


def _one_error_line(capsys, path: Path, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(path) in err, err
    for w in words:
        assert w in err, err
    return err


def test_info_on_a_dicom_file_with_a_corrupt_vr(tmp_path, capsys):
    series = write_ct_series(tmp_path / "s", phantom((12, 10, 4)))
    bad = series.paths[0]
    corrupt_vr(bad)
    assert main(["info", str(tmp_path / "s")]) == 0  # the folder: the file is skipped, with the reason
    out = capsys.readouterr().out
    assert "corrupt header: element (0008,0060) cannot be parsed" in out and bad.name in out
    assert main(["info", str(bad)]) == 2  # the file itself: refused
    _one_error_line(capsys, bad, "corrupt header")


def test_reconstruct_refuses_a_1e_9_mm_slice_spacing(tmp_path, capsys):
    path = write(tmp_path / "thin.nii.gz", small_nifti_bytes(affine=np.diag([1.0, 1.0, 1e-9, 1.0])))
    out = tmp_path / "out.nii.gz"
    assert main(["reconstruct", str(path), "-o", str(out), "--missing", "2", "-q"]) == 2
    _one_error_line(capsys, path, "implausible geometry", "1e-09")
    assert not out.exists()


@pytest.mark.parametrize("name,content,words", [
    ("random.nii", np.random.default_rng(0).bytes(4096), ("not a readable NIfTI",)),
    ("empty.nii.gz", b"", ("empty file",)),
    ("empty.nii", b"", ("empty file",)),
    ("garbage.nii.gz", b"\x1f\x8b\x08\x00garbage", ("not a readable NIfTI",)),
])
def test_info_on_files_that_are_not_nifti(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["info", str(path)]) == 2
    _one_error_line(capsys, path, *words)


@pytest.mark.parametrize("case", ["nan_affine", "zero_pixdim", "negative_dim", "truncated",
                                  "absurd_dims", "absurd_dims_gz"])
def test_info_and_reconstruct_refuse_bad_headers(tmp_path, capsys, case):
    raw = small_nifti_bytes()
    name = "x.nii.gz" if case.endswith("_gz") else "x.nii"
    if case == "nan_affine":
        path, words = nan_affine_nifti(tmp_path / name), ("NaN",)
    else:
        patched, words = {
            # no sform/qform: nibabel builds the affine from pixdim, here with a zero slice spacing
            "zero_pixdim": (patch_nifti(raw, pixdim=(1, 1, 1, 0, 1, 1, 1, 1), sform_code=0, qform_code=0),
                            ("pixdim", "non-zero")),
            "negative_dim": (patch_nifti(raw, dim=(3, 8, -7, 5, 1, 1, 1, 1)), ()),
            "truncated": (raw[: len(raw) - 40], ("truncated",)),
            "absurd_dims": (patch_nifti(raw, dim=(3, 32767, 32767, 32767, 1, 1, 1, 1)), ()),
            "absurd_dims_gz": (patch_nifti(raw, dim=(3, 32767, 32767, 32767, 1, 1, 1, 1)), ()),
        }[case]
        path = write(tmp_path / name, patched)
    assert main(["info", str(path)]) == 2
    _one_error_line(capsys, path, *words)
    out = tmp_path / "out.nii.gz"
    assert main(["reconstruct", str(path), "-o", str(out), "--missing", "2", "-q"]) == 2
    _one_error_line(capsys, path, *words)
    assert not out.exists()


def test_a_small_allocation_cap_refuses_a_valid_volume(tmp_path, capsys, monkeypatch):
    path = write(tmp_path / "ok.nii", small_nifti_bytes(shape=(40, 40, 20)))
    assert main(["info", str(path)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("LDM_MED_MAX_BYTES", "16K")
    assert main(["info", str(path)]) == 2
    _one_error_line(capsys, path, "allocation cap", "LDM_MED_MAX_BYTES")
