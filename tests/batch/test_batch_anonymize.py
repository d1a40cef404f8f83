"""--anonymize (PS3.15 basic profile, consistent UID remapping) and --workers."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydicom
from conftest import run_cli
from dicom_synth import BIRTH_DATE, PATIENT_ID, PATIENT_NAME

from ldm_med.batch.anonymize import Anonymizer


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.suffix != ".sqlite")


def test_anonymized_outputs_hold_no_identifiers_and_remap_uids_consistently(tree, linear_run,
                                                                            tmp_path):
    out = tmp_path / "anon"
    assert run_cli(tree["root"], out, "--method", "linear", "--anonymize", "-q") == 0
    for path in _files(out):
        data = path.read_bytes()
        for ident in (PATIENT_NAME, PATIENT_ID, BIRTH_DATE, "Secretname", "../../x"):
            assert ident.encode() not in data, (path.name, ident)
    report = json.loads((out / "report.json").read_text())
    assert all("source_series_uid" not in s and s["description"] == "" for s in report["series"])
    salt = sqlite3.connect(out / "manifest.sqlite").execute(
        "SELECT value FROM meta WHERE name = 'anonymize_salt'").fetchone()[0]
    anon = Anonymizer(salt)
    src = tree["series"]["axial"]
    source = {k: pydicom.dcmread(p) for k, p in src.paths.items()}
    rec = next(s for s in report["series"] if s["first_file"].endswith("axial/slice000.dcm"))
    derived = [pydicom.dcmread(p) for p in sorted((out / rec["folder"] / "dicom").glob("*.dcm"))]
    study = anon.uid(source[0].StudyInstanceUID)
    patients = {str(d.PatientID) for d in derived}
    assert len(patients) == 1 and patients.pop().startswith("ANON-")
    for k, d in enumerate(derived):
        assert d.StudyInstanceUID == study != source[0].StudyInstanceUID
        assert d.FrameOfReferenceUID == anon.uid(source[0].FrameOfReferenceUID)
        assert d.SeriesInstanceUID == rec["derived_series_uid"]
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.PatientIdentityRemoved == "YES"
        assert d.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert "PatientBirthDate" not in d or d.PatientBirthDate == ""
        if k in source:  # references point at the remapped source instance
            assert d.SourceImageSequence[0].ReferencedSOPInstanceUID == \
                anon.uid(source[k].SOPInstanceUID)
            assert (d.pixel_array == source[k].pixel_array).all()
    # the same OUT_DIR (its salt) gives the same UIDs again; another OUT_DIR other UIDs
    again = tmp_path / "anon2"
    assert run_cli(tree["root"], again, "--method", "linear", "--anonymize", "-q") == 0
    other = pydicom.dcmread(sorted((again / rec["folder"] / "dicom").glob("*.dcm"))[0])
    assert other.StudyInstanceUID != study


def test_two_workers_write_the_same_bytes(tree, linear_run, tmp_path):
    out = tmp_path / "w2"
    assert run_cli(tree["root"], out, "--method", "linear", "--workers", "2", "-q") == 0
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "series").rglob("*")
           if p.is_file()}
    ref = {p.relative_to(linear_run["out"]).as_posix(): p.read_bytes()
           for p in (linear_run["out"] / "series").rglob("*") if p.is_file()}
    assert got == ref
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["repaired"] == 4 and report["run"]["workers"] == 2
