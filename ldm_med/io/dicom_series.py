"""DICOM folders -> series -> ``Volume``.

``scan_dicom_folder`` reads headers only: it finds every file (any name, recursively), skips what
cannot give greyscale slices (each with a reason), groups the rest into series, drops localizers and
places each series' slices on a uniform grid (``dicom_geometry``). ``read_series`` then reads the
pixels of one series, applies the rescale per slice and builds the ``Volume``.

Grouping: SeriesInstanceUID + orientation + Rows/Columns + PixelSpacing + echo / temporal position /
stack / b-value. AcquisitionNumber splits a group only when that resolves repeated positions
(CT scanners often number every rotation, so splitting on it always would break axial series).

Duplicate positions: with a few, the first file at each position (lowest InstanceNumber) is kept and
the others are reported; when there are at least twice as many images as positions the group is
4D-like data and ``read_series`` refuses it. Pixel values of duplicates are not compared.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ldm_med.errors import InputError
from ldm_med.io import dicom_geometry as geom
from ldm_med.io import dicom_headers as hdr
from ldm_med.io import limits
from ldm_med.io.dicom_headers import Frame
from ldm_med.volume import Volume, lps_to_ras

_SMALL_SCOUT = 5  # orthogonal orientation groups this small, none a majority: a multi-planar scout


@dataclass
class SkippedFile:
    path: Path
    reason: str
    # Patient identifiers seen in the scan, used only to redact printed paths (never printed).
    identifiers: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


@dataclass
class SliceRef:
    """Where the image of one grid slot comes from."""

    path: Path
    frame: int | None
    sop_uid: str | None
    slope: float
    intercept: float


@dataclass
class SeriesInfo:
    """One image series as found by ``scan_dicom_folder`` (headers only).

    ``shape`` and ``spacing`` are in voxel order ``(i, j, k)``: columns, rows, slices.
    ``slots`` has one entry per grid position, None where no image was acquired.
    ``error`` says why the series cannot be read as one volume (None when it can).
    """

    uid: str
    description: str
    modality: str
    n_files: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: tuple[float, ...]
    acquired: np.ndarray
    warnings: list[str]
    files: list[Path]
    index: int = 0
    number: int | None = None
    slots: list[SliceRef | None] = field(default_factory=list)
    affine_lps: np.ndarray = field(default_factory=lambda: np.eye(4))
    error: str | None = None
    folder: Path | None = None
    identifiers: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return int(self.acquired.sum())

    @property
    def missing(self) -> np.ndarray:
        return np.flatnonzero(~self.acquired)


class HiddenHeader(Dataset):
    """A pydicom Dataset whose printed form hides its content (it holds patient data).

    Everything else is an ordinary Dataset: ``Dataset(header)`` gives a plain copy for debugging.
    """

    def __repr__(self) -> str:
        return f"<DICOM header, {len(self)} elements (content hidden)>"

    __str__ = __repr__


# -- scanning ----------------------------------------------------------------------------------
def _list_files(folder: Path) -> list[Path]:
    errors: list[OSError] = []
    out = [Path(root) / name
           for root, _dirs, names in os.walk(folder, onerror=errors.append) for name in names]
    if errors and not out:
        raise InputError(f"{folder}: cannot read folder ({errors[0].strerror or errors[0]})")
    return sorted(out)


def _read_frames(paths: list[Path], skipped: list[SkippedFile],
                 ids: set[str]) -> list[Frame]:
    frames: list[Frame] = []
    seen_sop: set[str] = set()
    codec_verdict: dict[tuple, str | None] = {}
    for path in paths:
        try:
            ds, pixel = hdr.read_header(path)
            ids |= hdr.identifiers(ds)
            hdr.classify(ds, pixel)
            ts = hdr.transfer_syntax(ds)
            if ts.is_compressed:
                key = (str(ts), ds.get("BitsAllocated"), ds.get("BitsStored"),
                       ds.get("PhotometricInterpretation"), ds.get("PixelRepresentation"))
                if key not in codec_verdict:
                    codec_verdict[key] = hdr.decoder_problem(ts) or hdr.trial_decode(path, ts)
                if codec_verdict[key]:
                    raise hdr.Skip(codec_verdict[key])
            sop = str(ds.get("SOPInstanceUID", ""))
            if sop and sop in seen_sop:
                raise hdr.Skip("duplicate file: same SOPInstanceUID as another file")
            seen_sop.add(sop)
            frames += hdr.image_frames(path, ds)
        except hdr.Skip as why:
            skipped.append(SkippedFile(path, str(why)))
        except MemoryError:  # an allocation the size checks missed: a bug, not bad input
            raise
        except Exception as err:  # noqa: BLE001 - a header no rule above foresaw: skip it, keep going
            skipped.append(SkippedFile(path, hdr.corrupt_header(err)))
    return frames


def _orientation_groups(frames: list[Frame]) -> list[list[Frame]]:
    """Split frames sharing every key but orientation into groups of one orientation each.

    Linear in the frames for the usual case (a multi-frame file can hold 65535 frames of one
    orientation): the group of the previous frame is tried first, in plain Python.
    """
    groups: list[list[Frame]] = []
    keys: list[tuple[float, ...] | None] = []
    last = -1
    for f in frames:
        key = None if f.iop is None else tuple(float(v) for v in f.iop)
        order = ([last] if last >= 0 else []) + [i for i in range(len(groups)) if i != last]
        for i in order:
            if (key is None) == (keys[i] is None) and (key is None or _same_iop(key, keys[i])):
                groups[i].append(f)
                last = i
                break
        else:
            groups.append([f])
            keys.append(key)
            last = len(groups) - 1
    return groups


def _same_iop(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``geom.same_orientation`` (numpy.allclose, atol 1e-3) without numpy's per-call cost."""
    return all(abs(x - y) <= 1e-3 + 1e-5 * abs(y) for x, y in zip(a, b))


def _drop_localizers(groups: list[list[Frame]], skipped: list[SkippedFile]) -> list[list[Frame]]:
    """Within one SeriesInstanceUID: drop orientation groups orthogonal to the majority."""
    oriented = [g for g in groups if g[0].iop is not None]
    if len(oriented) < 2:
        return groups
    sizes = sorted((len(g) for g in oriented), reverse=True)
    major = max(oriented, key=len)
    if sizes[0] > sizes[1]:
        drop = [g for g in oriented if g is not major and geom.orthogonal(g[0].iop, major[0].iop)]
        reason = f"localizer: orientation orthogonal to the other {len(major)} images of its series"
    elif sizes[0] <= _SMALL_SCOUT and all(geom.orthogonal(a[0].iop, b[0].iop) for a in oriented
                                          for b in oriented if a is not b):
        drop = oriented
        reason = "localizer: small groups of images in orthogonal planes (multi-planar scout)"
    else:
        return groups
    for g in drop:
        skipped += [SkippedFile(f.path, reason) for f in g]
    return [g for g in groups if not any(g is d for d in drop)]


def _has_duplicates(frames: list[Frame]) -> bool:
    return bool(geom.fit_slice_grid(np.stack([f.ipp for f in frames]), frames[0].iop).duplicates)


def _split_acquisitions(frames: list[Frame]) -> tuple[list[list[Frame]], bool]:
    """Split by AcquisitionNumber when that (and only that) resolves repeated positions."""
    by_acq: dict[str | None, list[Frame]] = defaultdict(list)
    for f in frames:
        by_acq[f.acquisition].append(f)
    if len(by_acq) > 1 and _has_duplicates(frames):
        parts = list(by_acq.values())
        if not any(_has_duplicates(p) for p in parts):
            return parts, True
    return [frames], False


def _has_geometry(frames: list[Frame]) -> bool:
    """Every frame has a position, and the group an orientation (positions alone give no order)."""
    return frames[0].iop is not None and all(f.ipp is not None for f in frames)


def _series_info(frames: list[Frame], folder: Path, skipped: list[SkippedFile],
                 note: str | None) -> SeriesInfo:
    f0 = frames[0]
    frames = sorted(frames, key=lambda f: (f.instance if f.instance is not None else 1 << 62,
                                           str(f.path), f.frame or 0))
    warnings_: list[str] = [note] if note else []
    error = None
    if not _has_geometry(frames):
        iop = np.asarray(hdr.IDENTITY_IOP)
        if len(frames) > 1:
            error = (f"{len(frames)} images without ImagePositionPatient/ImageOrientationPatient: "
                     "the slice order is unknown")
        else:
            warnings_.append("no ImagePositionPatient/ImageOrientationPatient: world position "
                             "unknown (identity orientation assumed)")
        positions = np.zeros((1, 3))
    else:
        iop = np.asarray(f0.iop, dtype=np.float64)
        positions = np.stack([f.ipp for f in frames])
    warnings_ += sorted({f.assumed for f in frames if f.assumed})
    grid = geom.fit_slice_grid(
        positions, iop, spacing_between=f0.spacing_between,
        fallback_spacing=f0.spacing_between or f0.thickness or 1.0,
        instance_numbers=[f.instance for f in frames])
    if error is None:
        warnings_ += grid.warnings
        error = grid.error
    if error is None:
        error = _size_problem((f0.cols, f0.rows, grid.n_slots),
                              (f0.pixel_spacing[1], f0.pixel_spacing[0], grid.spacing), folder)
    slots: list[SliceRef | None] = [None] * grid.n_slots
    if error is None:
        for f, k in zip(frames, grid.slot):
            if k >= 0:
                slots[k] = SliceRef(f.path, f.frame, f.sop_uid, f.slope, f.intercept)
        skipped += [SkippedFile(frames[i].path, "duplicate slice position: another image at the "
                                "same position was kept") for i, _kept in grid.duplicates]
    files = sorted({f.path for f in frames})
    aff = geom.affine_lps(iop, f0.pixel_spacing, grid.origin, grid.step)
    return SeriesInfo(
        uid=f0.series_uid, description=f0.description, modality=f0.modality,
        n_files=len(files),
        shape=(f0.cols, f0.rows, grid.n_slots if error is None else len(frames)),
        spacing=(f0.pixel_spacing[1], f0.pixel_spacing[0], grid.spacing),
        orientation=tuple(float(v) for v in iop),
        acquired=grid.acquired if error is None else np.ones(len(frames), dtype=bool),
        warnings=warnings_, files=files, number=f0.number, slots=slots, affine_lps=aff,
        error=error, folder=folder)


def _redact(text: str, identifiers: frozenset[str]) -> str:
    """``text`` with every patient identifier seen in the scan replaced by ``<patient>`` (a damaged
    header can make a description or a skip reason swallow the patient's name)."""
    for ident in sorted(identifiers, key=len, reverse=True):
        if ident.lower() in text.lower():
            text = re.sub(re.escape(ident), "<patient>", text, flags=re.IGNORECASE)
    return text


def _size_problem(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                  folder: Path) -> str | None:
    """Why a series' grid cannot be read (implausible spacing, above the allocation cap), or None."""
    try:
        limits.check_spacing(spacing, folder)
        limits.check_shape(shape, 4, folder, "the volume")
    except InputError as err:
        return str(err).removeprefix(f"{folder}: ")
    return None


def scan_dicom_folder(folder: str | Path) -> tuple[list[SeriesInfo], list[SkippedFile]]:
    """Find the image series under ``folder`` from headers only (no pixel data is decoded).

    Returns:
        The series, numbered from 1 in a stable order (SeriesNumber, UID), and the skipped files.

    Raises:
        InputError: the folder does not exist, cannot be read, or holds no files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: " + ("not a folder" if folder.exists()
                                          else "no such file or folder"))
    paths = _list_files(folder)
    if not paths:
        raise InputError(f"{folder}: the folder is empty (no files found)")
    skipped: list[SkippedFile] = []
    ids: set[str] = set()
    with hdr.quiet():
        frames = _read_frames(paths, skipped, ids)

    by_key: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        ps = tuple(round(v, 4) for v in f.pixel_spacing)
        by_key[(f.series_uid, f.rows, f.cols, ps, f.split_key)].append(f)
    by_uid: dict[str, list[list[Frame]]] = defaultdict(list)
    for key, members in by_key.items():
        by_uid[key[0]] += _orientation_groups(members)

    series: list[SeriesInfo] = []
    for groups in by_uid.values():
        for group in _drop_localizers(groups, skipped):
            parts, split = _split_acquisitions(group) if _has_geometry(group) else ([group], False)
            note = "split by AcquisitionNumber (repeated acquisitions)" if split else None
            series += [_series_info(p, folder, skipped, note) for p in parts]
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 62, s.uid,
                               -s.n_images, s.orientation, str(s.files[0])))
    frozen = frozenset(ids)
    for i, s in enumerate(series, start=1):
        s.index, s.identifiers = i, frozen
        s.description, s.modality = _redact(s.description, frozen), _redact(s.modality, frozen)
        s.warnings = [_redact(w, frozen) for w in s.warnings]
        s.error = None if s.error is None else _redact(s.error, frozen)
    for k in skipped:
        k.identifiers = frozen
        k.reason = _redact(k.reason, frozen)
    skipped.sort(key=lambda s: str(s.path))
    return series, skipped


# -- reading -----------------------------------------------------------------------------------
def _decode_file(path: Path) -> tuple[Dataset, np.ndarray]:
    with hdr.quiet():
        ds = hdr.dcmread(path)
        arr = hdr.read_pixels(ds)
    return ds, arr


def _frame(arr: np.ndarray, frame: int | None, rows: int, cols: int) -> np.ndarray:
    """One ``(rows, cols)`` frame of a decoded file; ``ValueError`` when the file no longer matches the
    header the scan read (other size, fewer frames)."""
    img = arr[frame] if frame is not None and arr.ndim == 3 else arr
    if img.shape != (rows, cols):
        raise ValueError(f"decoded frame of shape {img.shape}, the header said {(rows, cols)}")
    return img


def read_series(info: SeriesInfo) -> Volume:
    """Read the pixels of one series into a ``Volume`` (modality values, e.g. HU for CT).

    Slices that fail to decode are marked not acquired, reported in ``metadata["skipped"]`` and
    ``metadata["warnings"]``.

    Raises:
        InputError: the series is not one uniform volume (``info.error``) or nothing decodes.
    """
    label = f"series {info.index} ({info.description or info.uid})"
    if info.error:
        raise InputError(f"{info.folder}: {label}: {info.error}")
    cols, rows, n = info.shape
    limits.check_shape((cols, rows, n), 4, info.folder, label)
    data = np.zeros((cols, rows, n), dtype=np.float32)
    acquired = info.acquired.copy()
    warnings_ = list(info.warnings)
    skipped: list[tuple[str, str]] = []
    reference: Dataset | None = None
    by_file: dict[Path, list[int]] = defaultdict(list)
    for k, ref in enumerate(info.slots):
        if ref is not None:
            by_file[ref.path].append(k)
    for path, ks in by_file.items():
        try:
            ds, arr = _decode_file(path)
            planes = [_frame(arr, info.slots[k].frame, rows, cols) for k in ks]
            for k, img in zip(ks, planes):
                ref = info.slots[k]
                data[:, :, k] = hdr.modality_values(img, ds, ref.slope, ref.intercept).T
        except MemoryError:  # an allocation the size checks missed: a bug, not bad input
            raise
        except Exception as err:  # noqa: BLE001 - damaged, changed or vanished since the scan
            acquired[ks] = False
            data[:, :, ks] = 0
            text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            reason = f"cannot decode pixel data: {text}"
            skipped.append((str(path), reason))
            warnings_.append(f"{path.name}: {reason}; slice(s) {ks} marked missing")
            continue
        if reference is None:
            reference = ds
    if reference is None:
        raise InputError(f"{info.folder}: {label}: no slice could be decoded ({skipped[0][1]})")
    for tag in hdr._PIXEL_TAGS:
        if tag in reference:
            del reference[tag]
    header = HiddenHeader(reference)
    header.file_meta = reference.file_meta
    if hasattr(reference, "original_encoding") and hasattr(header, "set_original_encoding"):
        header.set_original_encoding(*reference.original_encoding,
                                     reference.original_character_set)
    refs = [info.slots[k] if acquired[k] else None for k in range(n)]
    slopes = {(r.slope, r.intercept) for r in refs if r is not None}
    first = next(r for r in refs if r is not None)
    rescale = {"slope": first.slope, "intercept": first.intercept, "varies": len(slopes) > 1,
               "type": str(reference.get("RescaleType", "") or ("HU" if info.modality == "CT"
                                                                 else ""))}
    if len(slopes) > 1:
        rescale["per_slice"] = [None if r is None else (r.slope, r.intercept) for r in refs]
    metadata = {
        "modality": info.modality or "unknown", "source": str(info.folder),
        "series_uid": info.uid, "series_description": info.description,
        "series_index": info.index, "rescale": rescale, "warnings": warnings_,
        "skipped": skipped,
        "sop_instance_uids": [None if r is None else r.sop_uid for r in refs],
        "source_frames": [None if r is None else r.frame for r in refs],
        "dicom_reference": header,
    }
    return Volume(data=data, affine=lps_to_ras(info.affine_lps), slice_axis=2, acquired=acquired,
                  metadata=metadata)
