"""Write the bundled sample volumes (seeded, so a re-run reproduces the same voxels).

    python sample_data/make_samples.py [OUT_DIR]       # default: the folder this script is in

Writes ``ct_phantom.nii.gz``, ``mr_phantom.nii.gz``, ``molecule.nii.gz``, ``astro_field.nii.gz`` and
``ct_gap_dicom/``: a CT phantom series as DICOM files with three slices left out (a single gap and a
double gap), for ``ldm-med info`` and reconstruction demos.
"""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np

try:
    import ldm_med  # noqa: F401
except ModuleNotFoundError:  # running from a source tree without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nibabel as nib
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from ldm_med.data import astro_field, ct_body, molecular_density, mr_head
from ldm_med.io import nifti
from ldm_med.volume import LPS_TO_RAS, Volume

SEED = 2024
GAP_SLICES = (8, 15, 16)  # removed from the DICOM series


def _uid(*parts: str) -> str:
    """Deterministic UID ``2.25.<name-based UUID>`` from ``parts``.

    (``pydicom.uid.generate_uid(prefix=None, entropy_srcs=...)`` ignores ``entropy_srcs`` and returns
    a random UUID, so it cannot give reproducible UIDs.)
    """
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "ldm-med/sample_data/" + "/".join(parts)).int)


def save_nifti(vol: Volume, path: Path, step: float = 1.0) -> None:
    """NIfTI with int16 voxels ``round(value / step)`` and ``scl_slope = step`` (exact when ``step`` is 1
    and the values are integers); gzip level 9 to keep the repository small."""
    data = np.rint(vol.data / step)
    if data.min() < -32768 or data.max() > 32767:
        raise ValueError(f"{path.name}: values do not fit int16 with step {step}")
    img = nib.Nifti1Image(data.astype(np.int16), vol.affine)
    img.header.set_slope_inter(step if step != 1.0 else 1.0, 0.0)
    img.header.set_dim_info(slice=vol.slice_axis)
    img.header["descrip"] = str(vol.metadata.get("description", ""))[:79].encode()
    img.set_qform(vol.affine, code=1)
    img.set_sform(vol.affine, code=1)
    # what the volume holds, in ldm-med's header extension (as ldm_med.io.save_nifti writes it): the
    # modality picks the refiner (a density map or a cube guessed from its intensities would be "MR")
    stored = {nifti.EXTENSION_KEY: {"modality": vol.metadata["modality"], "slice_axis": int(vol.slice_axis)}}
    img.header.extensions.append(nib.nifti1.Nifti1Extension(nifti.EXTENSION_CODE,
                                                            json.dumps(stored).encode("utf-8")))
    level = nib.openers.Opener.default_compresslevel
    nib.openers.Opener.default_compresslevel = 9
    try:
        nib.save(img, str(path))
    finally:
        nib.openers.Opener.default_compresslevel = level


def save_ct_dicom_series(vol: Volume, folder: Path, skip: tuple[int, ...]) -> int:
    """One CT Image Storage file per slice except ``skip``; returns the number of files written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.dcm"):
        old.unlink()
    aff_lps = LPS_TO_RAS @ vol.affine
    sx, sy, sz = vol.spacing
    row_cos = aff_lps[:3, 0] / sx
    col_cos = aff_lps[:3, 1] / sy
    study, series, frame = _uid("study"), _uid("series"), _uid("frame of reference")
    written = 0
    for k in range(vol.shape[2]):
        if k in skip:
            continue
        sop = _uid("sop", str(k))
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = _uid("implementation")
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.Modality, ds.Manufacturer = "CT", "ldm-med (procedural phantom)"
        ds.StudyDescription = "ldm-med sample"
        ds.SeriesDescription = f"CT phantom, slices {','.join(map(str, skip))} left out"
        ds.PatientName, ds.PatientID = "Phantom^CT", "LDMMED-PHANTOM-0001"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = f"{sz:g}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.PositionReferenceIndicator = ""
        ipp = aff_lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + aff_lps[:3, 3]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_cos, *col_cos)]
        ds.SliceLocation = f"{ipp[2]:.4f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.PixelSpacing = [f"{sy:g}", f"{sx:g}"]  # row spacing (between rows), column spacing
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        hu = np.rint(vol.data[:, :, k].T)  # DICOM rows run along voxel axis j, columns along i
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype("<u2").tobytes()
        _save(ds, folder / f"CT{k + 1:04d}.dcm")
        written += 1
    return written


def _save(ds: Dataset, path: Path) -> None:
    try:
        ds.save_as(str(path), enforce_file_format=True)  # pydicom >= 3
    except TypeError:
        ds.is_little_endian, ds.is_implicit_VR = True, False  # pydicom 2.x
        ds.save_as(str(path), write_like_original=False)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ct = ct_body((128, 128, 48), (1.0, 1.0, 2.5), seed=SEED)
    save_nifti(ct, out / "ct_phantom.nii.gz")
    save_nifti(mr_head((128, 128, 40), (1.0, 1.0, 3.0), seed=SEED), out / "mr_phantom.nii.gz")
    mol = molecular_density((64, 64, 64), seed=SEED)
    save_nifti(mol, out / "molecule.nii.gz", step=float(np.percentile(mol.data, 99.9)) / 1000.0)
    save_nifti(astro_field((128, 128, 24), seed=SEED), out / "astro_field.nii.gz")  # counts: integers
    series = ct_body((96, 96, 20), (1.25, 1.25, 2.5), seed=SEED + 1)
    n = save_ct_dicom_series(series, out / "ct_gap_dicom", GAP_SLICES)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.suffix in (".gz", ".dcm"))
    print(f"wrote 4 NIfTI volumes and {n} DICOM files to {out} ({total / 1e6:.2f} MB); "
          f"pydicom {pydicom.__version__}, nibabel {nib.__version__}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
