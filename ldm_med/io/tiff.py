"""TIFF stacks (``tifffile``), ImageJ-compatible.

Voxels: ``(i, j, k)`` = (x along a row, y down the columns, page); one page is a volume with one slice.
The slice axis is the page axis (2). Spacing: x and y from ``XResolution``/``YResolution``, z from the
ImageJ ``spacing``, in the ImageJ ``unit`` (inch and centimetre resolution units become mm). TIFF has
no world frame: the affine follows DICOM's convention (x, y in patient LPS) so that viewers show the
image the right way up, unless the ldm-med record holds the volume's own affine (it does for files
ldm-med wrote, as long as the spacing in the tags still agrees with it).

Writing: an ImageJ hyperstack (``ZYX``), uint8 or uint16 for integer values in range, else float32; the
ImageJ description carries ``unit``, ``spacing``, ``synthetic=true`` for synthetic data and the ldm-med
record as one JSON line (``ldm_med={...}``), which ImageJ keeps and ignores. No DateTime tag.
"""
from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.io.formats import (
    integer_dtype,
    parse_record,
    prefer_recorded,
    read_failure,
    record,
    spatial_unit,
    to_json,
    volume_from,
)
from ldm_med.volume import Volume

TIFF_SUFFIXES = (".tif", ".tiff")
_STACK_AXES = "ZQITIP"  # axes tifffile may give the pages of a stack


def _pixel_size(tag, unit_code: int) -> tuple[float, str | None]:
    """(size of one pixel, unit) from a resolution tag (pixels per unit) and ResolutionUnit."""
    if tag is None:
        return 1.0, None
    value = tag.value
    num, den = (value if isinstance(value, tuple) else (float(value), 1.0))
    if not num or not den or not np.isfinite(float(num) / float(den)):
        return 1.0, None
    size = float(den) / float(num)
    if unit_code == 2:
        return size * 25.4, "mm"
    if unit_code == 3:
        return size * 10.0, "mm"
    return size, None


def _stack_array(path: Path, arr: np.ndarray, axes: str) -> np.ndarray:
    """``(pages, Y, X)`` from a tifffile series; ``InputError`` for colour or multi-dimensional data."""
    keep = [i for i, (a, n) in enumerate(zip(axes, arr.shape)) if n > 1 or a in "YX"]
    arr = arr.reshape([arr.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "S" in axes or "C" in axes:
        raise InputError(f"{path}: colour or multi-channel TIFF (axes {axes}, shape {arr.shape}); ldm-med "
                         "reads one channel")
    if not axes.endswith("YX") or len(axes) > 3 or (len(axes) == 3 and axes[0] not in _STACK_AXES):
        raise InputError(f"{path}: TIFF series with axes {axes} (shape {arr.shape}); ldm-med reads one "
                         "image or one stack of images")
    return arr[None] if arr.ndim == 2 else arr


class _Errors(logging.Handler):
    """Collects what tifffile logs as errors (it reads what it can of a damaged file and only logs)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, rec: logging.LogRecord) -> None:
        self.messages.append(rec.getMessage().splitlines()[0][:200])


@contextlib.contextmanager
def _logged_errors() -> Iterator[_Errors]:
    logger = logging.getLogger("tifffile")
    handler = _Errors()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def _check_ifds(path: Path, max_pages: int = 100_000) -> None:
    """Walk a classic TIFF's chain of image directories before tifffile parses them: every directory and
    every tag's values inside the file, a bounded number of pages, no loop (a damaged directory can
    otherwise keep tifffile busy for minutes). BigTIFF is left to tifffile."""
    import struct

    raw = path.read_bytes()
    size = len(raw)
    if size < 8 or raw[:4] not in (b"II*\x00", b"MM\x00*"):
        return
    e = "<" if raw[:2] == b"II" else ">"
    offset, seen = struct.unpack_from(e + "I", raw, 4)[0], set()
    while offset:
        if offset in seen or len(seen) >= max_pages or offset + 2 > size:
            raise InputError(f"{path}: corrupt TIFF: image directory chain is broken at byte {offset}")
        seen.add(offset)
        (n,) = struct.unpack_from(e + "H", raw, offset)
        if offset + 2 + 12 * n + 4 > size:
            raise InputError(f"{path}: corrupt TIFF: a directory of {n} tags runs past the end of the file")
        for k in range(n):
            _, typ, count, value = struct.unpack_from(e + "HHII", raw, offset + 2 + 12 * k)
            nbytes = _TYPE_SIZES.get(typ, 1) * count
            if nbytes > 4 and value + nbytes > size:
                raise InputError(f"{path}: corrupt TIFF: a tag declares {nbytes} bytes of values past the "
                                 "end of the file")
        (offset,) = struct.unpack_from(e + "I", raw, offset + 2 + 12 * n)


def _check_declared(path: Path, series, page) -> None:
    """The series' declared size against the cap and the file size, before tifffile allocates it."""
    from ldm_med.io import limits

    nbytes = limits.check_shape(series.shape, np.dtype(series.dtype).itemsize, path, "the TIFF series")
    compressed = int(getattr(page, "compression", 1) or 1) != 1
    limits.check_declared(path, nbytes, path.stat().st_size, compressed=compressed, what="the TIFF header")


def load_tiff(path: str | Path) -> Volume:
    """Read the first series of a TIFF file (a stack of pages, or one image) as a ``Volume``."""
    import tifffile

    path = Path(path)
    try:
        _check_ifds(path)
    except OSError as err:
        raise read_failure(path, err, "TIFF file") from None
    try:
        with _logged_errors() as errors, tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            _check_declared(path, series, tif.pages[0])
            axes, arr = series.axes, series.asarray()
            page = tif.pages[0]
            ij = tif.imagej_metadata or {}
            tags = page.tags
            unit_code = int(getattr(tags.get("ResolutionUnit"), "value", 1) or 1)
            (sx, ux), (sy, _) = (_pixel_size(tags.get(k), unit_code) for k in ("XResolution", "YResolution"))
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - tifffile raises TiffFileError, ValueError, OSError...
        raise read_failure(path, err, "TIFF file") from None
    if errors.messages:
        raise InputError(f"{path}: truncated or corrupt TIFF file ({errors.messages[0]})")
    if arr.dtype.kind not in "iufb" or arr.size == 0:
        raise InputError(f"{path}: TIFF data of type {arr.dtype} is not greyscale numbers")
    stack = _stack_array(path, arr, axes)
    unit = str(ij.get("unit") or ux or "pixel").replace("\\u00B5", "u").replace("micron", "um")
    try:
        sz = float(ij.get("spacing", 1.0) or 1.0)
    except (TypeError, ValueError):
        raise InputError(f"{path}: corrupt ImageJ spacing {str(ij.get('spacing'))[:40]!r}") from None
    header = np.diag([-sx, -sy, sz, 1.0])  # DICOM's convention: x, y are patient L and P
    rec = parse_record(ij.get("ldm_med") if isinstance(ij.get("ldm_med"), str) else None)
    if ij.get("synthetic") is True:
        rec = {**rec, "synthetic": True}
    affine = prefer_recorded(header, rec, axes=3 if stack.shape[0] > 1 else 2, origin=False)
    data = np.asarray(stack, dtype=np.float32).transpose(2, 1, 0)  # (page, row, column) -> (i, j, k)
    info = {"axes": axes, "pages": stack.shape[0], "ImageJ": "yes" if ij else "no"}
    return volume_from(data, affine, path, fmt="tiff", rec=rec, slice_axis=2,
                       extra={"spatial_unit": unit, "dtype": arr.dtype.name, "header": info})


def tiff_bytes(volume: Volume, *, synthetic: bool = False, provenance: dict | None = None,
               where: str | Path = "") -> bytes:
    """The ImageJ-compatible TIFF file for ``volume`` (pages along ``k``), as bytes."""
    import tifffile

    rec = record(volume, synthetic=synthetic, provenance=provenance)
    arr = volume.data.transpose(2, 1, 0)  # (i, j, k) -> (page, row, column)
    dtype = integer_dtype(arr, (np.uint8, np.uint16)) or np.dtype(np.float32)
    sx, sy, sz = volume.spacing
    meta: dict = {"axes": "ZYX" if arr.shape[0] > 1 else "YX", "unit": spatial_unit(volume) or "pixel"}
    if arr.shape[0] > 1:
        meta["spacing"] = float(sz)
    if rec.get("synthetic"):
        meta["synthetic"] = "true"
    meta["ldm_med"] = to_json(rec, where)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(arr if arr.shape[0] > 1 else arr[0], dtype=dtype),
                     imagej=True, resolution=(1.0 / sx, 1.0 / sy), metadata=meta, software="ldm-med")
    return buf.getvalue()


def save_tiff(volume: Volume, path: str | Path, *, synthetic: bool = False,
              provenance: dict | None = None) -> None:
    """Write ``volume`` as an ImageJ-compatible TIFF stack (``.tif``, ``.tiff``), atomically."""
    from ldm_med.io.write import write_bytes

    path = Path(path)
    write_bytes(path, tiff_bytes(volume, synthetic=synthetic, provenance=provenance, where=path))
