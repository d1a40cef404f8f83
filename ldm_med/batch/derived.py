"""Derived DICOM series from a reconstruction: a clearly marked copy of the source series.

Every derived image is the source header of its slice (for a synthesised slice: the nearest
acquired slice's header) with:

* a new SeriesInstanceUID and SOPInstanceUIDs derived from the source UIDs (``naming.derive_uid``),
  so a re-run writes the same UIDs; Study, Patient and FrameOfReference kept, so it overlays;
* ImageType ``DERIVED\\SECONDARY`` (``DERIVED\\PRIMARY`` for enhanced objects, whose value 2 may
  only be PRIMARY), DerivationDescription (ldm-med, version, model, the synthesised
  positions), DerivationCodeSequence (DCM 113085 "Spatial resampling") and SourceImageSequence
  (DCM 121322 "Source image for image processing operation");
* per-slice ImagePositionPatient / ImageOrientationPatient / InstanceNumber / SliceLocation;
* stored values: acquired slices are the source's stored values exactly; synthesised slices are
  ``round((value - intercept) / slope)`` with the rescale of the slice they were modelled on, clipped
  to the range BitsStored and PixelRepresentation allow; always Explicit VR Little Endian.

Single-frame sources give one file per slice; an enhanced (multi-frame) source gives one
multi-frame file whose per-frame functional groups carry the geometry and rescale of each frame.

highdicom builds new IODs (SEG, SR, parametric maps, secondary capture, legacy-converted enhanced
images) from scratch; it has no "derived copy of this CT/MR series", which is what a viewer and a
PACS need here, so the objects are pydicom copies of the source headers. highdicom's
``CodedConcept`` gives the code sequence items.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from ldm_med.batch.naming import derive_uid
from ldm_med.io import dicom_headers as hdr

_DROP = ("SmallestImagePixelValue", "LargestImagePixelValue", "PixelPaddingRangeLimit",
         "IconImageSequence", "FloatPixelData", "DoubleFloatPixelData",
         "SmallestPixelValueInSeries", "LargestPixelValueInSeries", "DerivationImageSequence",
         "ReferencedImageSequence", "SourceImageEvidenceSequence")
MAX_ST = 1024  # DerivationDescription is ST


@dataclass(frozen=True)
class Derivation:
    """What to say about the derived series."""

    series_uid: str
    description: str  # DerivationDescription (ST, at most 1024 characters)
    series_description: str


@functools.cache
def _code_item(value: str, meaning: str) -> Dataset:
    try:
        from highdicom.sr import CodedConcept

        return CodedConcept(value, "DCM", meaning)
    except ImportError:  # highdicom is optional at run time; the item is the same
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        return item


def _code(value: str, meaning: str) -> Dataset:
    """A DCM code sequence item (made once, copied per use)."""
    return copy.deepcopy(_code_item(value, meaning))


def stored_dtype(ds: Dataset) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    kinds = {8: "i1", 16: "i2", 32: "i4"} if signed else {8: "u1", 16: "u2", 32: "u4"}
    if bits not in kinds:
        raise ValueError(f"BitsAllocated {bits} is not supported for derived images")
    return np.dtype("<" + kinds[bits])


def stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def to_stored(values: np.ndarray, slope: float, intercept: float, ds: Dataset) -> np.ndarray:
    """Modality values ``(rows, cols)`` -> stored values of ``ds``'s type, rounded and clipped."""
    lo, hi = stored_range(ds)
    raw = np.rint((values.astype(np.float64) - intercept) / (slope or 1.0))
    raw = np.nan_to_num(raw, nan=lo, posinf=hi, neginf=lo)
    return np.clip(raw, lo, hi).astype(stored_dtype(ds))


def _ds(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class SourceCache:
    """Full source datasets (pixels included), read once per file."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[Dataset, np.ndarray]] = {}

    def get(self, path: Path) -> tuple[Dataset, np.ndarray]:
        if path not in self._cache:
            with hdr.quiet():
                ds = hdr.dcmread(path)  # reads bounded by the file size
                arr = hdr.read_pixels(ds)
            self._cache[path] = (ds, arr)
        return self._cache[path]


def _nearest(slots: list, k: int, synthesised: np.ndarray) -> int:
    """Slot whose header a synthesised slice ``k`` is modelled on: its own, else the nearest
    acquired one (the lower one on a tie)."""
    if slots[k] is not None:
        return k
    cands = [j for j, r in enumerate(slots) if r is not None]
    good = [j for j in cands if not synthesised[j]] or cands
    return min(good, key=lambda j: (abs(j - k), j))


def _sources(slots: list, k: int, synthesised: np.ndarray) -> list[int]:
    """Acquired slots a derived slice comes from: itself, or its acquired neighbours."""
    if not synthesised[k]:
        return [k]
    below = [j for j in range(k - 1, -1, -1) if slots[j] is not None and not synthesised[j]][:1]
    above = [j for j in range(k + 1, len(slots)) if slots[j] is not None and not synthesised[j]][:1]
    return below + above


def _source_item(ds: Dataset, ref) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ref.sop_uid or ds.SOPInstanceUID
    if ref.frame is not None:
        item.ReferencedFrameNumber = ref.frame + 1
    item.PurposeOfReferenceCodeSequence = [
        _code("121322", "Source image for image processing operation")]
    return item


def _mark_derived(ds: Dataset, der: Derivation, enhanced: bool = False) -> None:
    image_type = list(ds.get("ImageType") or [])
    # Enhanced CT/MR/PET allow only PRIMARY as value 2 (PS3.3 C.8.16.1): DERIVED\PRIMARY there.
    ds.ImageType = ["DERIVED", "PRIMARY" if enhanced else "SECONDARY"] + \
        [str(v) for v in image_type[2:]]
    ds.DerivationDescription = der.description[:MAX_ST]
    ds.DerivationCodeSequence = [_code("113085", "Spatial resampling")]
    ds.SeriesInstanceUID = der.series_uid
    ds.SeriesDescription = der.series_description[:64]
    number = hdr._int(ds.get("SeriesNumber"))
    ds.SeriesNumber = (number or 0) % 100000 + 1000
    for key in _DROP:
        if key in ds:
            del ds[key]
    for tag in hdr._PIXEL_TAGS:
        if tag in ds:
            del ds[tag]


def _file_meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta


def _set_pixels(ds: Dataset, frames: np.ndarray) -> None:
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds["PixelData"].VR = "OB" if frames.dtype.itemsize == 1 else "OW"


def _save(ds: Dataset, path: Path) -> None:
    _file_meta(ds)
    with hdr.quiet():  # values the source already had (over-long LO...) are written as they were
        pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_derived(info, data: np.ndarray, synthesised: np.ndarray, der: Derivation,
                  folder: Path, anonymize: Callable[[Dataset], None] | None = None) -> list[Path]:
    """Write the derived series of ``info`` (a ``SeriesInfo``) into ``folder``.

    Args:
        data: ``(cols, rows, slices)`` modality values of the completed volume (``Volume.data``).
        synthesised: ``(slices,)`` bool, the slices the reconstruction filled.
        anonymize: applied to every dataset just before it is written.

    Returns:
        The files written, in slice order.
    """
    with hdr.quiet():
        return _write(info, data, synthesised, der, folder, anonymize)


def _write(info, data, synthesised, der, folder, anonymize) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cache = SourceCache()
    slots = info.slots
    first = next(r for r in slots if r is not None)
    if first.frame is not None and "PerFrameFunctionalGroupsSequence" in cache.get(first.path)[0]:
        return [_write_enhanced(info, data, synthesised, der, folder, cache, anonymize)]
    normal = np.cross(np.asarray(info.orientation[:3]), np.asarray(info.orientation[3:]))
    # One FrameOfReference for the series: the one most source slices name (first on a tie).
    fors = [str(cache.get(r.path)[0].get("FrameOfReferenceUID", "")) for r in slots if r]
    frame_of_reference = max(dict.fromkeys(fors), key=fors.count)
    paths = {}
    # Synthesised slices first (copies of their templates); then each acquired slice's own source
    # dataset is changed in place, as nothing reads it afterwards (saves a deep copy per slice).
    order = [k for k in range(len(slots)) if synthesised[k]] + \
        [k for k in range(len(slots)) if not synthesised[k]]
    for k in order:
        t = _nearest(slots, k, synthesised)
        ref = slots[t]
        src, arr = cache.get(ref.path)
        sources = Sequence([_source_item(cache.get(slots[j].path)[0], slots[j])
                            for j in _sources(slots, k, synthesised)])  # before any change
        ds = copy.deepcopy(src) if synthesised[k] or ref.frame is not None else src
        if ref.frame is not None and arr.ndim == 3:
            arr = arr[ref.frame]
        _mark_derived(ds, der)
        ds.SOPInstanceUID = derive_uid("ldm-med sop", der.series_uid, k)
        if frame_of_reference:
            ds.FrameOfReferenceUID = frame_of_reference
        if synthesised[k]:
            stored = to_stored(data[:, :, k].T, ref.slope, ref.intercept, ds)
        else:
            stored = np.asarray(arr).astype(stored_dtype(ds))
        if k != t or "ImagePositionPatient" not in ds:
            ipp = info.affine_lps @ np.array([0.0, 0.0, float(k), 1.0])
            ds.ImagePositionPatient = [_ds(v) for v in ipp[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in info.orientation]
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        ds.SliceLocation = _ds(float(ipp @ normal))
        ds.InstanceNumber = k + 1
        if "NumberOfFrames" in ds:
            del ds.NumberOfFrames
        ds.SourceImageSequence = sources
        _set_pixels(ds, stored)
        if anonymize is not None:
            anonymize(ds)
            ds.SeriesDescription = der.series_description[:64]
        path = folder / f"{k + 1:05d}.dcm"
        _save(ds, path)
        paths[k] = path
    return [paths[k] for k in sorted(paths)]


def _derived_frame_type(group: Dataset) -> None:
    """FrameType value 1 says DERIVED, as ImageType does (any *FrameTypeSequence in the group)."""
    for elem in group:
        if elem.VR == "SQ" and elem.keyword.endswith("FrameTypeSequence") and len(elem.value):
            item = elem.value[0]
            if "FrameType" in item:
                item.FrameType = ["DERIVED"] + [str(v) for v in list(item.FrameType)[1:]]


def _write_enhanced(info, data, synthesised, der, folder, cache, anonymize) -> Path:
    """One enhanced multi-frame file: per-frame groups copied from the frame each slice is
    modelled on, with that slice's position, in-stack number and rescale."""
    slots = info.slots
    first = next(r for r in slots if r is not None)
    src, _ = cache.get(first.path)
    ds = copy.deepcopy(src)
    _mark_derived(ds, der, enhanced=True)
    ds.SOPInstanceUID = derive_uid("ldm-med sop", der.series_uid, "enhanced")
    per_frame, frames, sources = [], [], []
    for k in range(len(slots)):
        t = _nearest(slots, k, synthesised)
        ref = slots[t]
        fsrc, arr = cache.get(ref.path)
        item = copy.deepcopy(fsrc.PerFrameFunctionalGroupsSequence[ref.frame])
        if k != t:
            ipp = info.affine_lps @ np.array([0.0, 0.0, float(k), 1.0])
            if "PlanePositionSequence" not in item:
                item.PlanePositionSequence = [Dataset()]
            item.PlanePositionSequence[0].ImagePositionPatient = [_ds(v) for v in ipp[:3]]
        if "FrameContentSequence" in item:
            item.FrameContentSequence[0].InStackPositionNumber = k + 1
        for key in ("DerivationImageSequence",):
            if key in item:
                del item[key]
        _derived_frame_type(item)
        per_frame.append(item)
        if synthesised[k]:
            frames.append(to_stored(data[:, :, k].T, ref.slope, ref.intercept, ds))
        else:
            frames.append(np.asarray(arr[ref.frame]).astype(stored_dtype(ds)))
        sources += [(cache.get(slots[j].path)[0], slots[j]) for j in _sources(slots, k, synthesised)]
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    for shared in ds.get("SharedFunctionalGroupsSequence") or []:
        _derived_frame_type(shared)
    ds.NumberOfFrames = len(frames)
    seen, items = set(), []
    for sds, ref in sources:
        if (ref.sop_uid, ref.frame) not in seen:
            seen.add((ref.sop_uid, ref.frame))
            items.append(_source_item(sds, ref))
    ds.SourceImageSequence = Sequence(items)
    ds.InstanceNumber = 1
    _set_pixels(ds, np.stack(frames))
    if anonymize is not None:
        anonymize(ds)
        ds.SeriesDescription = der.series_description[:64]
    path = folder / "00001.dcm"
    _save(ds, path)
    return path
