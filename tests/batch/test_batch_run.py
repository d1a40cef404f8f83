"""ldm-med batch over a generated tree: discovery, decisions, report, derived DICOM, NIfTI."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from batch_tree import HOSTILE_DESCRIPTION, HOSTILE_NAME, SHAPE
from conftest import run_cli
from dicom_synth import BIRTH_DATE, PATIENT_ID, PATIENT_NAME

from ldm_med.batch.derived import stored_range
from ldm_med.io.dicom_series import read_series, scan_dicom_folder

IDENTIFIERS = (PATIENT_NAME, PATIENT_ID, BIRTH_DATE, "Secretname", "Patientperson")


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dry_run_prints_plan_and_writes_nothing(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(tree["root"], out, "--dry-run") == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "repair 3 missing slice(s) (k = 3,7,8)" in text
    assert "leave alone: gantry tilt" in text and "non-uniform slice spacing" in text
    assert "compressed_no_decoder 1" in text and "truncated 1" in text
    assert not any(i in text for i in IDENTIFIERS)


def test_series_decisions_and_summary(linear_run):
    rep, by = linear_run["report"], linear_run["by_folder"]
    assert linear_run["code"] == 0
    assert by["axial"]["status"] == "done" and by["axial"]["synthesised"] == [3, 7, 8]
    assert by["oblique"]["synthesised"] == [5]
    assert by["enhanced"]["synthesised"] == [2, 9]
    assert by["complete"]["status"] == "complete" and "outputs" not in by["complete"]
    assert (by["two"]["status"], by["two"]["reason_code"]) == ("refused", "too_few_slices")
    assert by["nonuniform"]["reason_code"] == "non_uniform_spacing"
    assert by["tilt"]["reason_code"] == "gantry_tilt"
    summ = rep["summary"]
    assert summ["series_found"] == len(rep["series"]) == 9
    assert (summ["repaired"], summ["complete"], summ["failed"]) == (4, 1, 0)
    assert summ["slices_synthesised"] == 3 + 1 + 2 + 1
    assert summ["skipped_by_reason"] == {"compressed_no_decoder": 1, "dicomdir": 1,
                                         "duplicate_position": 1, "no_pixel_data": 1,
                                         "not_dicom": 1, "truncated": 1}
    skipped = {Path(k["path"]).name: k["reason_code"] for k in rep["skipped_files"]}
    assert skipped["truncated.dcm"] == "truncated" and skipped["report.dcm"] == "no_pixel_data"
    rows = list(csv.DictReader((linear_run["out"] / "series.csv").open()))
    assert len(rows) == 9 and {r["status"] for r in rows} == {"done", "complete", "refused"}
    assert len(list(csv.DictReader((linear_run["out"] / "skipped.csv").open()))) == 6


def test_no_patient_identifiers_and_safe_paths(linear_run, tree):
    out = linear_run["out"]
    for name in ("report.json", "series.csv", "skipped.csv"):
        text = (out / name).read_text()
        assert not any(i in text for i in IDENTIFIERS), name
        assert HOSTILE_NAME not in text
    assert "<patient>/axial/slice000.dcm" in (out / "report.json").read_text()
    hostile = linear_run["by_folder"]["hostile"]
    assert len(hostile["description"]) <= 64
    for p in out.rglob("*"):  # everything stays inside OUT_DIR, names are short and plain
        assert p.resolve().is_relative_to(out.resolve())
        assert len(p.name) <= 40 and ".." not in p.name
    ds = pydicom.dcmread(next((out / hostile["folder"] / "dicom").glob("*.dcm")))
    assert str(ds.PatientName) == HOSTILE_NAME  # the derived object keeps the patient
    assert str(ds.SeriesDescription).startswith("ldm-med repaired") and \
        len(ds.SeriesDescription) <= 64
    assert HOSTILE_DESCRIPTION not in str(ds.SeriesDescription)


def test_derived_dicom_headers_and_stored_values(linear_run, tree):
    rec = linear_run["by_folder"]["axial"]
    src = tree["series"]["axial"]
    files = sorted((linear_run["out"] / rec["folder"] / "dicom").glob("*.dcm"))
    assert len(files) == SHAPE[2]
    derived = [pydicom.dcmread(f) for f in files]
    source0 = pydicom.dcmread(src.paths[0])
    uids = {d.SeriesInstanceUID for d in derived}
    assert len(uids) == 1 and source0.SeriesInstanceUID not in uids
    assert len({d.SOPInstanceUID for d in derived}) == SHAPE[2]
    assert rec["derived_series_uid"] in uids
    dy, dx = src.pixel_spacing
    normal = np.cross(src.iop[:3], src.iop[3:])
    for k, d in enumerate(derived):
        assert d.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert list(d.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert "ldm-med" in d.DerivationDescription and "3 of 12" in d.DerivationDescription
        assert "InstanceNumber 4,8,9" in d.DerivationDescription
        assert d.DerivationCodeSequence[0].CodeValue == "113085"
        assert (d.StudyInstanceUID, d.PatientID) == (source0.StudyInstanceUID, source0.PatientID)
        assert d.FrameOfReferenceUID == source0.FrameOfReferenceUID  # the first slice's here:
        # the synthetic source names a new one per file; the derived series has one
        assert d.InstanceNumber == k + 1
        expect = src.positions[0] + k * 2.5 * normal
        assert np.allclose([float(v) for v in d.ImagePositionPatient], expect, atol=1e-4)
        assert np.isclose(float(d.SliceLocation), expect @ normal, atol=1e-4)
        refs = [r.ReferencedSOPInstanceUID for r in d.SourceImageSequence]
        if k in src.paths:
            s = pydicom.dcmread(src.paths[k])
            assert refs == [src.sop_uids[k]]
            assert np.array_equal(d.pixel_array, s.pixel_array)  # stored values exactly
            assert float(d.RescaleIntercept) == float(s.RescaleIntercept)
        else:
            below = max(j for j in src.paths if j < k)
            above = min(j for j in src.paths if j > k)
            assert refs == [src.sop_uids[below], src.sop_uids[above]]
            lo, hi = stored_range(d)
            assert lo <= d.pixel_array.min() and d.pixel_array.max() <= hi
        hu = d.pixel_array.astype(float) * float(d.RescaleSlope) + float(d.RescaleIntercept)
        if k in src.paths:  # modality values are the source's
            truth = s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept)
            assert np.array_equal(hu, truth)
        assert (dy, dx) == tuple(float(v) for v in d.PixelSpacing)


def test_derived_series_reads_back_with_source_geometry(linear_run, tree):
    for name in ("axial", "oblique", "enhanced"):
        rec = linear_run["by_folder"][name]
        found, _ = scan_dicom_folder(linear_run["out"] / rec["folder"] / "dicom")
        assert len(found) == 1 and found[0].error is None, name
        back = read_series(found[0])
        src, _ = scan_dicom_folder(Path(tree["root"]) / (
            f"{PATIENT_ID}/axial" if name == "axial" else name))
        assert back.acquired.all() and back.shape == src[0].shape
        assert np.allclose(found[0].affine_lps, src[0].affine_lps, atol=1e-4), name
        full = nib.load(linear_run["out"] / rec["folder"] / "volume.nii.gz")
        assert np.allclose(full.affine, back.affine, atol=1e-4)
        assert np.allclose(np.asarray(full.dataobj), back.data, atol=0.51), name  # rounding
        mask = np.asarray(nib.load(linear_run["out"] / rec["folder"] /
                                   "synthesised_mask.nii.gz").dataobj)
        assert sorted(np.flatnonzero(mask.any(axis=(0, 1)))) == rec["synthesised"]


def test_enhanced_source_gives_enhanced_derived_with_per_frame_rescale(linear_run, tree):
    rec = linear_run["by_folder"]["enhanced"]
    (path,) = (linear_run["out"] / rec["folder"] / "dicom").glob("*.dcm")
    d = pydicom.dcmread(path)
    src = pydicom.dcmread(Path(tree["root"]) / "enhanced" / "multiframe.dcm")
    assert d.NumberOfFrames == SHAPE[2] and d.SOPClassUID == src.SOPClassUID
    ks = tree["enhanced_ks"]
    for f, k in enumerate(ks):  # acquired frames: the source's stored values and rescale
        assert np.array_equal(d.pixel_array[k], src.pixel_array[f])
        a = d.PerFrameFunctionalGroupsSequence[k].PixelValueTransformationSequence[0]
        b = src.PerFrameFunctionalGroupsSequence[f].PixelValueTransformationSequence[0]
        assert a.RescaleIntercept == b.RescaleIntercept


def test_rerun_gives_same_uids_and_bytes(linear_run, tree, tmp_path):
    out = tmp_path / "again"
    assert run_cli(tree["root"], out, "--method", "linear", "-q") == 0
    assert _tree_digest(out / "series") == _tree_digest(linear_run["out"] / "series")


def test_source_untouched_and_bad_arguments(tree, tmp_path, capsys):
    before = _tree_digest(tree["root"])
    assert run_cli(tree["root"], Path(tree["root"]) / "out") == 2
    assert "inside IN_DIR" in capsys.readouterr().err
    assert run_cli(tree["root"], tmp_path / "o", "--format", "png") == 2
    assert run_cli(tree["root"], tmp_path / "o", "--send", "nonsense") == 2
    assert run_cli(tmp_path / "nope", tmp_path / "o") == 2
    assert run_cli(tree["root"], tmp_path / "o", "--workers", "0") == 2
    assert not (tmp_path / "o").exists()
    assert _tree_digest(tree["root"]) == before


def test_failing_series_does_not_stop_the_run(tree, tmp_path, monkeypatch):
    import ldm_med

    real = ldm_med.reconstruct

    def flaky(vol, missing, opts, progress=None):
        if np.flatnonzero(missing).tolist() == [5]:  # the oblique series only
            raise RuntimeError("simulated failure")
        return real(vol, missing, opts, progress=progress)

    monkeypatch.setattr(ldm_med, "reconstruct", flaky)
    out = tmp_path / "out"
    assert run_cli(tree["root"], out, "--method", "linear", "-q") == 1
    rep = json.loads((out / "report.json").read_text())
    status = [s["status"] for s in rep["series"]]
    assert status.count("failed") == 1 and status.count("done") == 3
    failed = next(s for s in rep["series"] if s["status"] == "failed")
    assert "simulated failure" in failed["reason"] and not (out / failed["folder"]).exists()


def test_nifti_only_with_uncertainty(tree, tmp_path):
    out = tmp_path / "out"
    one = Path(tree["root"]) / "oblique"
    assert run_cli(one, out, "--format", "nifti", "--refine", "pretrained", "--samples", "2",
                   "--device", "cpu", "-q") == 0
    rep = json.loads((out / "report.json").read_text())
    (rec,) = rep["series"]
    folder = out / rec["folder"]
    assert not (folder / "dicom").exists()
    assert sorted(rec["outputs"]) == ["synthesised_mask.nii.gz", "uncertainty.nii.gz",
                                      "volume.nii.gz"]
    unc = np.asarray(nib.load(folder / "uncertainty.nii.gz").dataobj)
    assert unc[:, :, 5].max() > 0 and unc[:, :, 4].max() == 0
