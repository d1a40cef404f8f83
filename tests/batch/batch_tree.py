"""A DICOM tree for the batch tests (helper, not a test module).

Series written from phantoms (32 x 32 in-plane, 12 slices) with slices removed: axial CT with a
per-slice RescaleIntercept, an oblique CT, an enhanced multi-frame CT, a complete series, and series
that must be refused (2 slices, non-uniform spacing, gantry tilt). Mixed in: a text file, a truncated
copy of a slice, a JPEG 2000 file (Pillow decodes it: a one-image series), a JPEG Lossless file (no
decoder here), a duplicate position, an object without pixel data, a DICOMDIR, and hostile values:
PatientName ``../../x``, a SeriesDescription with an absolute path and 300 characters, a folder named
after the PatientID.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
from dicom_synth import PATIENT_ID, base_dataset, phantom, rotation, write_ct_series, write_enhanced_ct
from pydicom.data import get_testdata_file

SHAPE = (32, 32, 12)
HOSTILE_NAME = "../../x"
HOSTILE_DESCRIPTION = "/etc/passwd/../../" + "A" * 300


def _gap_positions(origin, iop, dz, ks):
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return [np.asarray(origin, float) + k * dz * normal for k in ks]


def make_tree(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    hu = phantom(SHAPE).astype(np.float64)
    out: dict = {"root": root, "series": {}}
    patient_dir = root / PATIENT_ID  # folder named after the patient: must be redacted
    s = write_ct_series(patient_dir / "axial", hu, drop=(3, 7, 8),
                        intercepts={k: -1024.0 + 8 * (k % 3) for k in range(SHAPE[2])})
    out["series"]["axial"] = s
    r = rotation((1, 1, 0), 25)
    iop = tuple(r[:, 0]) + tuple(r[:, 1])
    out["series"]["oblique"] = write_ct_series(root / "oblique", hu, iop=iop, drop=(5,), dz=2.0)
    out["series"]["complete"] = write_ct_series(root / "complete", hu)
    out["series"]["two"] = write_ct_series(root / "two", hu[:, :, :2])
    out["series"]["nonuniform"] = write_ct_series(root / "nonuniform", hu, offsets={6: 1.1})
    out["series"]["tilt"] = write_ct_series(root / "tilt", hu, tilt=(0.0, 0.8, 0.0))
    with warnings.catch_warnings():  # pydicom warns about the over-long value: it is the point
        warnings.simplefilter("ignore")
        hostile = write_ct_series(root / "hostile", hu, drop=(4,),
                                  extra={"PatientName": HOSTILE_NAME,
                                         "SeriesDescription": HOSTILE_DESCRIPTION})
    out["series"]["hostile"] = hostile
    ks = [k for k in range(SHAPE[2]) if k not in (2, 9)]
    positions = _gap_positions((-40.0, -35.0, 12.0), (1, 0, 0, 0, 1, 0), 1.5, ks)
    (root / "enhanced").mkdir()
    write_enhanced_ct(root / "enhanced" / "multiframe.dcm", hu[:, :, ks], positions=positions,
                      intercepts=[-1024.0 - 2 * f for f in range(len(ks))])
    out["enhanced_ks"] = ks

    junk = root / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not dicom\n")
    data = s.paths[0].read_bytes()
    (junk / "truncated.dcm").write_bytes(data[: len(data) - 600])
    shutil.copy(get_testdata_file("JPEG2000.dcm"), junk / "compressed.dcm")
    shutil.copy(get_testdata_file("JPEG-LL.dcm"), junk / "lossless_jpeg.dcm")
    shutil.copy(get_testdata_file("DICOMDIR"), junk / "DICOMDIR")
    dup = pydicom.dcmread(out["series"]["complete"].paths[5])
    dup.SOPInstanceUID = dup.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dup.InstanceNumber = 99
    dup.save_as(root / "complete" / "zz_duplicate.dcm")
    sr = base_dataset("1.2.840.10008.5.1.4.1.1.88.11", pydicom.uid.generate_uid(),
                      pydicom.uid.generate_uid(), "SR")
    pydicom.dcmwrite(junk / "report.dcm", sr, enforce_file_format=True)
    return out
