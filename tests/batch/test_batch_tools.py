"""Derived series checked by the tools hospitals trust: dciodvfy (dicom3tools) and dcm2niix; and
pydicom's real dicomdirtests tree (a real gap, localizers, DICOMDIR)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_cli
from dicom_synth import PATIENT_ID


def _errors(path: Path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return {line.strip() for line in (run.stdout + run.stderr).splitlines()
            if line.startswith("Error")}


def _source_dir(tree, name: str) -> Path:
    return Path(tree["root"]) / (f"{PATIENT_ID}/axial" if name == "axial" else name)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("name", ["axial", "oblique", "hostile", "enhanced"])
def test_dciodvfy_adds_no_error(linear_run, tree, name):
    rec = linear_run["by_folder"][name]
    source_errors: set[str] = set()
    for src in sorted(_source_dir(tree, name).glob("*.dcm")):
        source_errors |= _errors(src)
    for derived in sorted((linear_run["out"] / rec["folder"] / "dicom").glob("*.dcm")):
        added = _errors(derived) - source_errors
        assert not added, (derived.name, sorted(added))


def _canonical_corners(img: nib.Nifti1Image) -> np.ndarray:
    shape = np.asarray(img.shape[:3]) - 1
    corners = np.array([[i, j, k] for i in (0, shape[0]) for j in (0, shape[1])
                        for k in (0, shape[2])], dtype=float)
    world = corners @ img.affine[:3, :3].T + img.affine[:3, 3]
    key = np.round(world, 2)
    return world[np.lexsort(key.T[::-1])]


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
@pytest.mark.parametrize("name", ["axial", "oblique", "enhanced"])
def test_dcm2niix_reads_one_volume_with_source_geometry(linear_run, tree, name, tmp_path):
    rec = linear_run["by_folder"][name]
    folder = linear_run["out"] / rec["folder"]
    run = subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-o", str(tmp_path), "-f", "x",
                          str(folder / "dicom")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    made = sorted(tmp_path.glob("*.nii"))
    assert [p.name for p in made] == ["x.nii"], run.stdout
    theirs = nib.load(made[0])
    ours = nib.load(folder / "volume.nii.gz")  # the source's grid (same affine as the source)
    assert theirs.shape[:3] == ours.shape or sorted(theirs.shape[:3]) == sorted(ours.shape)
    assert np.allclose(_canonical_corners(theirs), _canonical_corners(ours), atol=1e-3)
    a = nib.as_closest_canonical(theirs)
    b = nib.as_closest_canonical(ours)
    assert np.allclose(a.affine, b.affine, atol=1e-3)
    diff = a.get_fdata() - b.get_fdata()
    if name == "enhanced":  # dcm2niix applies the first frame's rescale to every frame of a
        # multi-frame file; the stored values must still agree: a constant offset per frame
        assert all(np.ptp(diff[:, :, k]) < 1.01 for k in range(diff.shape[2]))
    else:
        assert np.abs(diff).max() < 0.51


def test_pydicom_dicomdirtests_tree(tmp_path):
    import pydicom

    src = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
    before = {p: p.stat().st_mtime_ns for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    assert run_cli(src, out, "--method", "linear", "-q") == 0
    rep = json.loads((out / "report.json").read_text())
    codes = rep["summary"]["skipped_by_reason"]
    assert codes["dicomdir"] == 8 and codes["no_pixel_data"] >= 1
    gap = [s for s in rep["series"] if s["geometry_missing"]]
    assert len(gap) == 1 and gap[0]["status"] == "refused"  # 161 missing of 165: not fillable
    assert gap[0]["reason_code"] == "gap_too_large"
    assert all(s["status"] in ("refused", "complete") for s in rep["series"])
    assert {p: p.stat().st_mtime_ns for p in src.rglob("*") if p.is_file()} == before
    assert not any(os.scandir(out / "series")) if (out / "series").exists() else True
