"""One DICOM file's header: classify it as image frames or as a skipped file, with a reason.

Only headers are read (``stop_before_pixels``). Whether pixel data is present and complete is read
from the pixel data element's own header and the file size; whether it can be decoded from the
transfer syntax, pydicom's decoder registry and one trial decode per kind of compressed file (done
by the caller). Every file that cannot contribute slices raises ``Skip`` with a reason a user can
act on.
"""
from __future__ import annotations

import logging
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

CODEC_HINT = ('pip install "ldm-med[dicom-codecs]" (pylibjpeg, pylibjpeg-openjpeg, '
              "pylibjpeg-libjpeg) or pip install python-gdcm")
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
IDENTITY_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float / Double Float Pixel Data
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT",
             b"SV", b"UV"}
_DEFLATED = "1.2.840.10008.1.2.1.99"
_MAX_COORD = 1e9  # mm: positions, orientations and spacings beyond this are corrupt values
_BITS = (1, 8, 16, 32, 64)
_UID_TEXT = re.compile(r"[0-9.]{1,64}")
_CODE_TEXT = re.compile(r"[A-Za-z0-9 _.+\-]*")
_FRAGMENT_ITEM = 8  # bytes of an encapsulated fragment's item header: a frame takes at least that


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def quiet() -> Iterator[None]:
    """Silence pydicom's warnings about odd values while reading (they would flood the CLI)."""
    logger, drop = logging.getLogger("pydicom"), _BelowError()
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeFilter(drop)


class BoundedFile:
    """A read-only file whose ``read(n)`` never asks for more than the bytes left.

    CPython's buffered ``read(n)`` allocates ``n`` bytes before reading, and pydicom reads an element
    with the length its header declares: one corrupt length field (0xFFFFFFF0) would allocate 4 GiB for
    a file of a few kilobytes. Reading through this wrapper bounds every read by the file size.
    """

    def __init__(self, path: str | Path) -> None:
        self._fp = open(path, "rb")  # read-only: inputs are never modified
        self._size = os.fstat(self._fp.fileno()).st_size
        self.name = str(path)

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._fp.tell())
        return self._fp.read(left if n is None or n < 0 else min(n, left))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def close(self) -> None:
        self._fp.close()

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dcmread(path: str | Path, **kwargs: Any) -> Dataset:
    """``pydicom.dcmread`` through ``BoundedFile`` (every value read, nothing left lazy on disk)."""
    with BoundedFile(path) as fp:
        return pydicom.dcmread(fp, **kwargs)


class Skip(Exception):
    """A file that cannot contribute slices; the message is the reason shown to the user."""


@dataclass
class PixelInfo:
    """Where the pixel data stands in the file: bytes declared (None: encapsulated) and present."""

    declared: int | None
    available: int


@dataclass
class Frame:
    """One 2D image: a single-frame file or one frame of a multi-frame file.

    ``ipp``/``iop`` are None when the header has no geometry. ``assumed`` says what had to be
    assumed (it becomes a series warning).
    """

    path: Path
    frame: int | None  # 0-based frame index in a multi-frame file
    sop_uid: str | None
    series_uid: str
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]  # DICOM order: (row spacing dy, column spacing dx)
    ipp: np.ndarray | None
    iop: np.ndarray | None
    slope: float
    intercept: float
    instance: int | None
    split_key: tuple  # echo, temporal position, stack, b-value: never one volume together
    acquisition: str | None
    spacing_between: float | None
    thickness: float | None
    description: str
    modality: str
    number: int | None
    assumed: str | None = None


# -- value parsing -----------------------------------------------------------------------------
def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    ok = len(out) == n and np.all(np.isfinite(out)) and max(map(abs, out), default=0) < _MAX_COORD
    return out if ok else None


def _float(value: Any) -> float | None:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        out = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and np.isfinite(out) else None


def _int(value: Any) -> int | None:
    v = _float(value)
    return int(v) if v is not None else None


def _encoding(ds: Dataset) -> tuple[bool, bool]:
    enc = getattr(ds, "original_encoding", None)
    if enc and enc[0] is not None:
        return bool(enc[0]), bool(enc[1])
    return bool(ds.is_implicit_VR), bool(ds.is_little_endian)


# -- header + pixel element --------------------------------------------------------------------
def _pixel_element(fp: Any, size: int, implicit: bool, little: bool) -> PixelInfo | None:
    """Read the element header at ``fp`` (where ``stop_before_pixels`` stopped), if pixel data."""
    head = fp.read(12)
    if len(head) < 8:
        return None
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", head[:4])
    if (group << 16 | elem) not in _PIXEL_TAGS:
        return None
    if implicit:
        hlen, (length,) = 8, struct.unpack(e + "I", head[4:8])
    elif head[4:6] in _LONG_VRS:
        hlen, (length,) = 12, struct.unpack(e + "I", head[8:12])
    else:
        hlen, (length,) = 8, struct.unpack(e + "H", head[6:8])
    start = fp.tell() - len(head) + hlen
    return PixelInfo(None if length == 0xFFFFFFFF else length, max(0, size - start))


def read_header(path: Path) -> tuple[Dataset, PixelInfo | None]:
    """The header (no pixel bytes are read) and where its pixel data stands, if it has any.

    Raises:
        Skip: not a DICOM file, or unreadable.
    """
    with quiet():
        try:
            size = os.path.getsize(path)
            with BoundedFile(path) as fp:
                try:
                    ds = pydicom.dcmread(fp, stop_before_pixels=True)
                except InvalidDicomError:  # no preamble / meta header: a SOP class says DICOM
                    fp.seek(0)
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                    if "SOPClassUID" not in ds:
                        raise Skip("not a DICOM file") from None
                # pydicom converts values lazily: a corrupt VR or value would raise later, far from
                # here (NotImplementedError: Unknown Value Representation). Convert everything now.
                try:
                    ds.walk(lambda _ds, _elem: None)
                except MemoryError:  # an allocation the size checks missed: a bug, not bad input
                    raise
                except Exception as err:  # noqa: BLE001 - any value pydicom cannot convert
                    raise Skip(corrupt_header(err)) from None
                meta = getattr(ds, "file_meta", None)
                if meta is not None and meta.get("TransferSyntaxUID") == _DEFLATED:
                    full = dcmread(path)  # inflated in memory: offsets are not the file's
                    tag = next((t for t in _PIXEL_TAGS if t in full), None)
                    n = None if tag is None else len(full[tag].value)
                    return ds, (None if n is None else PixelInfo(n, n))
                return ds, _pixel_element(fp, size, *_encoding(ds))
        except Skip:
            raise
        except OSError as err:
            raise Skip(f"unreadable: {err.strerror or err}") from None
        except MemoryError:  # an allocation the size checks missed: a bug, not bad input
            raise
        except Exception as err:  # noqa: BLE001 - any parser failure means "not readable DICOM"
            raise Skip(f"not a DICOM file ({type(err).__name__} while parsing)") from None


def shown(value: Any, limit: int = 24) -> str:
    """A header value as it may appear in a skip reason: short, and only when it looks like a code or a
    number (a damaged length can make a value swallow the next elements, patient name included)."""
    text = str(value)
    return text if len(text) <= limit and _CODE_TEXT.fullmatch(text) else "(unreadable value)"


def corrupt_header(err: BaseException) -> str:
    """The skip reason for an element pydicom cannot convert: the tag and the kind of error, never the
    value (it may be a patient identifier)."""
    tag = re.search(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)", str(err))
    where = f"element {tag.group(0)}" if tag else "an element"
    return f"corrupt header: {where} cannot be parsed ({type(err).__name__})"


def transfer_syntax(ds: Dataset) -> UID:
    """The file's transfer syntax (from its encoding for files without a meta header)."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(ts)
    implicit, little = _encoding(ds)
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def _expected_bytes(ds: Dataset) -> int:
    n = ((_int(ds.get("Rows")) or 0) * (_int(ds.get("Columns")) or 0)
         * (_int(ds.get("SamplesPerPixel")) or 1) * (_int(ds.get("NumberOfFrames")) or 1))
    return (n * (_int(ds.get("BitsAllocated")) or 16) + 7) // 8


def classify(ds: Dataset, pixel: PixelInfo | None) -> None:
    """Raise ``Skip`` with a reason unless the header describes greyscale image frames."""
    meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "")
                                            if meta is not None else ""))
    if sop == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise Skip("DICOMDIR: index of a DICOM file-set, not an image")
    if pixel is None:
        name = UID(sop).name if _UID_TEXT.fullmatch(sop) else "the object"
        raise Skip(f"no pixel data: {name} holds no image")
    spp = _int(ds.get("SamplesPerPixel")) or 1
    if spp != 1:
        raise Skip(f"colour image: {shown(ds.get('PhotometricInterpretation', '?'))} with {spp} samples "
                   "per pixel; only greyscale volumes are supported")
    image_type = ds.get("ImageType") or []
    image_type = [str(v).upper() for v in ([image_type] if isinstance(image_type, str)
                                           else image_type)]
    if "LOCALIZER" in image_type:
        raise Skip("localizer: ImageType LOCALIZER")
    if "PROJECTION IMAGE" in image_type:
        raise Skip("projection image: ImageType PROJECTION IMAGE is a rendered view (MIP), "
                   "not a slice")
    _check_sizes(ds, pixel)
    if pixel.declared is not None and not transfer_syntax(ds).is_compressed:
        need = max(pixel.declared, _expected_bytes(ds))
        if pixel.available < need:
            raise Skip(f"truncated pixel data: the file holds {pixel.available} of {need} bytes")


def _check_sizes(ds: Dataset, pixel: PixelInfo) -> None:
    """Skip unless Rows, Columns, BitsAllocated and NumberOfFrames are sane and the decoded frames fit
    in the allocation cap (``limits``) and, for encapsulated data, in the file."""
    from ldm_med.io import limits

    rows, cols = _int(ds.get("Rows")), _int(ds.get("Columns"))
    frames_raw = ds.get("NumberOfFrames")
    n_frames = 1 if frames_raw in (None, "") else _int(frames_raw)
    bits = _int(ds.get("BitsAllocated"))
    if not (rows and cols and rows > 0 and cols > 0):
        raise Skip(f"invalid image size: Rows {shown(ds.get('Rows'))}, Columns {shown(ds.get('Columns'))} "
                   "(both must be 1 or more)")
    if n_frames is None or n_frames < 1:
        raise Skip(f"invalid NumberOfFrames {shown(frames_raw)} (must be 1 or more)")
    if bits is not None and bits not in _BITS:
        raise Skip(f"invalid BitsAllocated {bits} (expected one of {', '.join(map(str, _BITS))})")
    if pixel.declared is None and n_frames * _FRAGMENT_ITEM > pixel.available:
        raise Skip(f"truncated pixel data: {n_frames} compressed frames cannot fit in the "
                   f"{pixel.available} bytes the file holds")
    nbytes = rows * cols * n_frames * (4 + max(1, (bits or 16) // 8))  # stored + float32 values
    if nbytes > limits.max_bytes():
        raise Skip(f"too large: {cols} x {rows} x {n_frames} frames would need {limits.human(nbytes)}, "
                   f"above the {limits.human(limits.max_bytes())} allocation cap ({limits.ENV_MAX_BYTES})")


def identifiers(ds: Dataset) -> set[str]:
    """Patient identifiers in a header (never printed: used to redact printed paths)."""
    out: set[str] = set()
    for key in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
                "AccessionNumber"):
        value = ds.get(key)
        values = value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
        for v in values:
            text = str(v or "").strip()
            out |= {text, text.replace("^", "_"), text.replace("^", " ")}
            out |= set(text.replace("^", " ").split())
    return {v for v in out if len(v) >= 3}


# -- decoding ----------------------------------------------------------------------------------
def decoder_problem(ts: UID) -> str | None:
    """Why pixel data in transfer syntax ``ts`` cannot be decoded here (None: it can).

    Asks pydicom's decoder registry (``pydicom.pixels.get_decoder(ts).is_available``); a decoder
    that is available but fails on a particular file is caught by ``trial_decode``.
    """
    if not ts.is_compressed:
        return None
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom < 3: left to the trial decode
        return None
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"no decoder for {ts.name} ({ts}): pydicom cannot decode this transfer syntax"
    if decoder.is_available:
        return None
    needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
    return f"no decoder for {ts.name} ({ts}): needs {needs}; install one: {CODEC_HINT}"


def trial_decode(path: Path, ts: UID) -> str | None:
    """Decode the first frame of a compressed file: the reason if no installed decoder can."""
    with quiet():
        try:
            read_pixels(dcmread(path), frame=0)
        except RuntimeError as err:  # pydicom: all plugins missing or all plugins failed
            detail = " ".join(line.strip() for line in str(err).splitlines()[1:]) or str(err)
            return (f"no decoder for {ts.name} ({ts}): the installed decoders failed ({detail}); "
                    f"install one: {CODEC_HINT}")
        except MemoryError:  # an allocation the size checks missed: a bug, not bad input
            raise
        except Exception:  # noqa: BLE001 - damage in this one file is reported when reading it
            return None
    return None


def read_pixels(ds: Dataset, frame: int | None = None) -> np.ndarray:
    """Stored values: ``(rows, cols)`` for one frame, ``(frames, rows, cols)`` for all of them."""
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = transfer_syntax(ds)
    n_frames = _int(ds.get("NumberOfFrames")) or 1
    if frame is None or n_frames == 1:
        return ds.pixel_array
    try:
        from pydicom.pixels import pixel_array
    except ImportError:  # pydicom < 3
        return ds.pixel_array[frame]
    return pixel_array(ds, index=frame)


def modality_values(arr: np.ndarray, ds: Dataset, slope: float, intercept: float) -> np.ndarray:
    """Stored values -> modality values (HU for CT), as float32."""
    if "ModalityLUTSequence" in ds:
        try:
            from pydicom.pixels import apply_modality_lut
        except ImportError:  # pydicom < 3
            from pydicom.pixel_data_handlers.util import apply_modality_lut
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    return (arr.astype(np.float64) * slope + intercept).astype(np.float32)


# -- frames and their geometry -----------------------------------------------------------------
def _group_value(groups: list[Dataset | None], seq: str, attr: str) -> Any:
    """A functional-group attribute: per-frame group first, then the shared one."""
    for group in groups:
        if group is not None and seq in group and len(group[seq].value):
            item = group[seq].value[0]
            if attr in item and item[attr].value not in (None, ""):
                return item[attr].value
    return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def display_text(value, limit: int) -> str:
    """A header text fit to print: up to the first control character, at most ``limit`` characters (the
    VR's maximum: LO 64, CS 16). A damaged value length makes a value swallow the elements after it
    (tags, VRs, the patient's name); their binary tags start with control bytes, so the cut drops them."""
    text = str(value)
    for i, ch in enumerate(text):
        if ord(ch) < 32 or ord(ch) == 127:
            text = text[:i]
            break
    return text[:limit].strip()


def image_frames(path: Path, ds: Dataset) -> list[Frame]:
    """The image frames of a classified image header, with geometry, rescale and grouping keys."""
    n_frames = _int(ds.get("NumberOfFrames")) or 1
    ps_top = _floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    ipp_top = _floats(ds.get("ImagePositionPatient"), 3)
    iop_top = _floats(ds.get("ImageOrientationPatient"), 6)
    base = dict(
        path=path, sop_uid=str(ds.get("SOPInstanceUID", "")) or None,
        series_uid=str(ds.get("SeriesInstanceUID", "")) or "(no SeriesInstanceUID)",
        rows=_int(ds.get("Rows")) or 0, cols=_int(ds.get("Columns")) or 0,
        description=display_text(ds.get("SeriesDescription") or ds.get("ProtocolName") or "", 64),
        modality=display_text(ds.get("Modality", ""), 16), number=_int(ds.get("SeriesNumber")),
        acquisition=None if ds.get("AcquisitionNumber") in (None, "")
        else str(ds.get("AcquisitionNumber")),
    )
    slope_top = _float(ds.get("RescaleSlope")) or 1.0
    intercept_top = _float(ds.get("RescaleIntercept")) or 0.0
    sbs_top = _float(ds.get("SpacingBetweenSlices"))
    thick_top = _float(ds.get("SliceThickness"))
    split_top = (_float(ds.get("EchoNumbers")), _int(ds.get("TemporalPositionIdentifier")),
                 None, _float(ds.get("DiffusionBValue")))
    frames: list[Frame] = []

    if "PerFrameFunctionalGroupsSequence" in ds:  # enhanced multi-frame
        n_groups = len(ds.PerFrameFunctionalGroupsSequence)
        if n_groups != n_frames:
            raise Skip(f"inconsistent header: NumberOfFrames {n_frames} but {n_groups} per-frame "
                       "functional groups")
        shared_seq = ds.get("SharedFunctionalGroupsSequence")
        shared = shared_seq[0] if shared_seq else None
        for f, per in enumerate(ds.PerFrameFunctionalGroupsSequence):
            g = [per, shared]
            ps = _floats(_group_value(g, "PixelMeasuresSequence", "PixelSpacing"), 2) or ps_top
            content = per.FrameContentSequence[0] if per.get("FrameContentSequence") else Dataset()
            frames.append(Frame(
                **base, frame=f, pixel_spacing=ps or (1.0, 1.0),
                ipp=_floats(_group_value(g, "PlanePositionSequence", "ImagePositionPatient"), 3),
                iop=_floats(_group_value(g, "PlaneOrientationSequence", "ImageOrientationPatient"),
                            6) or iop_top,
                slope=_float(_group_value(g, "PixelValueTransformationSequence", "RescaleSlope"))
                or slope_top,
                intercept=_first(_float(_group_value(g, "PixelValueTransformationSequence",
                                                     "RescaleIntercept")), intercept_top),
                instance=_int(content.get("InStackPositionNumber")),
                split_key=(_float(_group_value(g, "MREchoSequence", "EffectiveEchoTime")),
                           _int(content.get("TemporalPositionIndex")),
                           str(content.get("StackID", "")) or None,
                           _float(_group_value(g, "MRDiffusionSequence", "DiffusionBValue"))),
                spacing_between=_float(_group_value(g, "PixelMeasuresSequence",
                                                    "SpacingBetweenSlices")) or sbs_top,
                thickness=_float(_group_value(g, "PixelMeasuresSequence", "SliceThickness"))
                or thick_top,
                assumed=None if ps else "no PixelSpacing: 1 mm pixels assumed",
            ))
        return _checked(frames)

    common = dict(base, pixel_spacing=ps_top or (1.0, 1.0), slope=slope_top,
                  intercept=intercept_top, split_key=split_top, spacing_between=sbs_top,
                  thickness=thick_top, instance=_int(ds.get("InstanceNumber")))
    no_ps = None if ps_top else "no PixelSpacing: 1 mm pixels assumed"
    if n_frames == 1:
        return _checked([Frame(**common, frame=None, assumed=no_ps,
                               ipp=None if ipp_top is None else np.asarray(ipp_top),
                               iop=None if iop_top is None else np.asarray(iop_top))])

    # Legacy multi-frame: positions from GridFrameOffsetVector (RT dose, NM) or file order.
    offsets = ds.get("GridFrameOffsetVector")
    iop = np.asarray(iop_top or IDENTITY_IOP, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    origin = np.asarray(ipp_top or (0.0, 0.0, 0.0), dtype=np.float64)
    notes = [no_ps] if no_ps else []
    off = _floats(offsets, n_frames) if n_frames > 1 else None
    if off is not None and ipp_top and iop_top:
        off = np.asarray(off) - off[0]
    else:
        dz = sbs_top or thick_top or 1.0
        off = np.arange(n_frames) * dz
        notes.append(f"no per-frame positions: the {n_frames} frames are stacked in file order, "
                     f"{dz:g} mm apart" + ("" if iop_top else ", in an assumed axial orientation")
                     + ("" if ipp_top else ", at an unknown position"))
    return _checked([Frame(**common, frame=f, ipp=origin + off[f] * normal, iop=iop,
                           assumed="; ".join(notes) or None) for f in range(n_frames)])


def valid_orientation(iop: np.ndarray) -> bool:
    """Two (nearly) unit, (nearly) orthogonal direction cosines: anything else is a corrupt IOP."""
    row, col = np.asarray(iop[:3], dtype=np.float64), np.asarray(iop[3:], dtype=np.float64)
    norms = np.array([np.linalg.norm(row), np.linalg.norm(col)])
    return bool(np.all(np.abs(norms - 1) < 0.05) and abs(float(row @ col)) < 0.05)


def _checked(frames: list[Frame]) -> list[Frame]:
    """Skip a file whose frames have non-positive pixel spacing or a corrupt orientation."""
    for f in frames:
        if not all(v > 0 for v in f.pixel_spacing):
            raise Skip(f"invalid geometry: PixelSpacing {f.pixel_spacing[0]:g} x {f.pixel_spacing[1]:g} mm "
                       "(both must be above 0)")
        if f.iop is not None and not valid_orientation(f.iop):
            raise Skip("invalid geometry: ImageOrientationPatient "
                       f"{[round(float(v), 4) for v in f.iop]} is not two orthogonal unit vectors")
    return frames
