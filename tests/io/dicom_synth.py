"""Write small synthetic DICOM series from a numpy phantom (test helper, not a test module).

``write_ct_series`` writes one CT file per slice of a ``(X, Y, Z)`` HU volume with a chosen
orientation, spacing, rescale and file naming, and returns the geometry it used so tests can
compare against world coordinates computed straight from the headers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PATIENT_NAME = "Secretname^Patientperson"
PATIENT_ID = "PID-998877"
BIRTH_DATE = "19450203"


def phantom(shape: tuple[int, int, int] = (24, 20, 12)) -> np.ndarray:
    """Integer HU volume ``(X, Y, Z)``: air, a water ellipse, a bone rod that drifts with k,
    and a per-slice offset so that every slice differs."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    vol = np.full(shape, -1000, dtype=np.int32)
    cx, cy = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    body = ((x - cx) / (0.4 * shape[0])) ** 2 + ((y - cy) / (0.4 * shape[1])) ** 2 <= 1
    for k in range(shape[2]):
        sl = np.where(body, 40 + 3 * k, -1000)
        bone = (x - (cx - 3 + k % 5)) ** 2 + (y - cy) ** 2 <= 4
        sl[bone & body] = 700 + 10 * k
        vol[:, :, k] = sl
    vol[0, 0, :] = -1024 + np.arange(shape[2])  # corner marker: tells slices and axes apart
    return vol


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    a = np.asarray(axis, dtype=float)
    a /= np.linalg.norm(a)
    t = np.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


@dataclass
class WrittenSeries:
    folder: Path
    series_uid: str
    iop: np.ndarray
    pixel_spacing: tuple[float, float]  # (dy, dx)
    positions: dict[int, np.ndarray]  # slice index -> IPP (LPS) of written slices
    paths: dict[int, Path] = field(default_factory=dict)
    sop_uids: dict[int, str] = field(default_factory=dict)

    def world_lps(self, i: float, j: float, k: int) -> np.ndarray:
        """LPS mm of voxel (i, j) of written slice k, straight from the header values."""
        dy, dx = self.pixel_spacing
        return self.positions[k] + i * self.iop[:3] * dx + j * self.iop[3:] * dy


def _save(ds: Dataset, path: Path) -> None:
    try:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def base_dataset(sop_class: str, series_uid: str, study_uid: str, modality: str) -> Dataset:
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.Modality = modality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, BIRTH_DATE
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesNumber = 3
    ds.SeriesDescription = "synthetic phantom"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def write_ct_series(folder: Path, hu: np.ndarray, *, iop=(1, 0, 0, 0, 1, 0),
                    origin=(-40.0, -35.0, 12.0), pixel_spacing=(0.8, 0.7), dz: float = 2.5,
                    slope: float = 1.0, intercept: float = -1024.0,
                    intercepts: dict[int, float] | None = None, drop=(), shuffle: bool = False,
                    seed: int = 0, offsets: dict[int, float] | None = None,
                    tilt: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    instance_numbers: dict[int, int] | None = None,
                    series_uid: str | None = None, extra: dict | None = None,
                    name: str = "slice", acquisition: int | None = None) -> WrittenSeries:
    """Write slices ``k`` of ``hu`` (except ``drop``) as CT files.

    Args:
        iop: ImageOrientationPatient (row cosines, column cosines).
        pixel_spacing: DICOM PixelSpacing (row spacing dy, column spacing dx).
        dz: distance between consecutive slices along the normal.
        intercepts: per-slice RescaleIntercept overrides.
        shuffle: random file names without extension, written in random order.
        offsets: extra displacement (mm, along the normal) per slice, for non-uniform spacing.
        tilt: LPS shift added per slice index (gantry tilt shears the stack).
        extra: attributes set on every file (e.g. SpacingBetweenSlices).
    """
    folder.mkdir(parents=True, exist_ok=True)
    iop = np.asarray(iop, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    rng = random.Random(seed)
    ks = [k for k in range(hu.shape[2]) if k not in set(drop)]
    order = ks[:]
    if shuffle:
        rng.shuffle(order)
    out = WrittenSeries(folder, series_uid, iop, tuple(pixel_spacing), {})
    for k in order:
        icpt = (intercepts or {}).get(k, intercept)
        ds = base_dataset(CTImageStorage, series_uid, study_uid, "CT")
        ipp = (np.asarray(origin, float) + (k * dz + (offsets or {}).get(k, 0.0)) * normal
               + k * np.asarray(tilt, float))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.10g}" for v in ipp]
        ds.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing]
        ds.SliceThickness = f"{dz:g}"
        ds.SliceLocation = f"{-1000 + 7 * rng.random():.3f}"  # deliberately meaningless
        ds.InstanceNumber = (instance_numbers or {}).get(k, k + 1)
        if acquisition is not None:
            ds.AcquisitionNumber = acquisition
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{icpt:g}"
        ds.RescaleType = "HU"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        stored = np.rint((hu[:, :, k] - icpt) / slope).astype(np.int16)
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
        ds.PixelData = np.ascontiguousarray(stored.T).tobytes()
        fname = f"{rng.getrandbits(40):010x}" if shuffle else f"{name}{k:03d}.dcm"
        path = folder / fname
        _save(ds, path)
        out.positions[k], out.paths[k], out.sop_uids[k] = ipp, path, ds.SOPInstanceUID
    return out


def write_enhanced_ct(path: Path, hu: np.ndarray, *, positions: list[np.ndarray],
                      iop=(1, 0, 0, 0, 1, 0), pixel_spacing=(0.8, 0.7),
                      intercepts: list[float] | None = None) -> None:
    """One Enhanced CT file whose frames are ``hu[:, :, f]`` at ``positions[f]`` (LPS)."""
    series_uid = generate_uid()
    ds = base_dataset("1.2.840.10008.5.1.4.1.1.2.1", series_uid, generate_uid(), "CT")
    n = hu.shape[2]
    intercepts = intercepts or [-1024.0] * n
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [f"{v:.10g}" for v in iop]
    measures.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing]
    measures.SliceThickness = "1"
    shared.PlaneOrientationSequence = [orient]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames, stored = [], []
    for f in range(n):
        item, pos, content, trans = Dataset(), Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [f"{v:.10g}" for v in positions[f]]
        content.InStackPositionNumber = f + 1
        content.StackID = "1"
        trans.RescaleSlope, trans.RescaleIntercept, trans.RescaleType = "1", \
            f"{intercepts[f]:g}", "HU"
        item.PlanePositionSequence = [pos]
        item.FrameContentSequence = [content]
        item.PixelValueTransformationSequence = [trans]
        frames.append(item)
        stored.append(np.rint(hu[:, :, f] - intercepts[f]).astype(np.int16).T)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.ascontiguousarray(np.stack(stored)).tobytes()
    _save(ds, path)
