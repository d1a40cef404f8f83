"""PNG images (Pillow): 2D only, 8 or 16 bit greyscale; an image is a ``Volume`` with one slice.

Voxels: ``(i, j, 0)`` = (x along a row, y down the columns). Pixel size from ``pHYs`` (pixels per metre,
as mm), else 1; the affine follows DICOM's convention (x, y in patient LPS) so viewers show the image
the right way up, unless the ldm-med record holds the volume's own affine.

Writing: integer values in 0..255 as 8 bit, in 0..65535 as 16 bit; anything else is scaled linearly to
16 bit (the record keeps offset and step, and reading undoes it: values come back to within half a
step). Text chunks: ``Software`` = ldm-med, ``Description`` = "SYNTHETIC: ..." for synthetic data, and
``ldm-med`` = the record (JSON). No ``tIME`` chunk: the same image gives the same bytes.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.io.formats import (
    SYNTHETIC_NOTE,
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

PNG_SUFFIXES = (".png",)
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L")
_LEVELS = 65535


def _check_chunks(path: Path) -> None:
    """Walk the PNG's chunks before Pillow reads them: every declared chunk length inside the file (a
    damaged length made Pillow allocate 609 MiB for a 6x5 image)."""
    import struct

    raw = path.read_bytes()
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return  # Pillow names the problem
    offset = 8
    while offset + 8 <= len(raw):
        length, kind = struct.unpack_from(">I4s", raw, offset)
        if offset + 12 + length > len(raw):
            raise InputError(f"{path}: corrupt PNG: chunk {kind!r} declares {length} bytes past the end of "
                             "the file")
        if kind == b"IEND":
            return
        offset += 12 + length


def load_png(path: str | Path) -> Volume:
    """Read a greyscale PNG as a ``Volume`` of shape ``(width, height, 1)``."""
    from PIL import Image

    path = Path(path)
    try:
        _check_chunks(path)
        with Image.open(str(path)) as im:
            if im.format != "PNG":
                raise InputError(f"{path}: not a PNG image (Pillow reads it as {im.format})")
            im.load()
            mode, info, arr = im.mode, dict(im.info), np.asarray(im)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError...
        raise read_failure(path, err, "PNG image") from None
    if mode not in _GREY_MODES or arr.ndim != 2:
        raise InputError(f"{path}: colour PNG (mode {mode}); ldm-med reads greyscale PNG images "
                         "(8 or 16 bit)")
    rec = parse_record(info.get("ldm-med"))
    if str(info.get("Description", "")).startswith("SYNTHETIC"):
        rec = {**rec, "synthetic": True}
    values = arr.astype(np.float64)
    scaling = rec.get("png_values")
    header_info = {"bit depth": 8 if arr.dtype == np.uint8 or mode in ("1", "L") else 16}
    numbers = isinstance(scaling, dict) and all(isinstance(scaling.get(k), (int, float))
                                                for k in ("offset", "step"))
    if numbers:
        values = values * scaling["step"] + scaling["offset"]
        header_info["values"] = f"scaled to 16 bit when written (step {scaling['step']:.4g})"
    dpi = info.get("dpi")
    sx, sy, unit = 1.0, 1.0, "pixel"
    if isinstance(dpi, tuple) and len(dpi) == 2 and min(float(d) for d in dpi) > 0:
        sx, sy, unit = 25.4 / float(dpi[0]), 25.4 / float(dpi[1]), "mm"
    axis = rec.get("png_axis", 2) if rec.get("png_axis") in (0, 1, 2) else 2
    data = np.expand_dims(values.T, axis)  # (row, column) -> (i, j) with the singleton axis back
    in_plane = [a for a in range(3) if a != axis]
    header = np.eye(4)
    header[in_plane, in_plane] = -sx, -sy  # DICOM's convention: x, y are patient L and P
    # without pHYs the file says nothing about geometry (no axes to compare: the record's affine as it
    # is); with it, the record must agree with pHYs, an integer number of pixels per metre
    affine = prefer_recorded(header, rec, axes=[] if unit == "pixel" else in_plane, origin=False,
                             rtol=2e-3 * max(sx, sy) + 1e-6)
    return volume_from(data, affine, path, fmt="png", rec=rec, slice_axis=axis,
                       extra={"spatial_unit": rec.get("spatial_unit", unit), "dtype": arr.dtype.name,
                              "header": header_info})


def _plane(volume: Volume, where: str | Path) -> tuple[np.ndarray, int]:
    """The one 2D image of ``volume`` as ``(rows, columns)``, and the axis that was of length 1."""
    shape = volume.shape
    axis = volume.slice_axis if shape[volume.slice_axis] == 1 else \
        next((a for a in (2, 1, 0) if shape[a] == 1), None)
    if axis is None:
        raise InputError(f"{where}: PNG holds one 2D image; this volume is {' x '.join(map(str, shape))} "
                         "(write a stack as TIFF, FITS, MRC or NIfTI)")
    return np.take(volume.data, 0, axis=axis).T, axis


def png_bytes(volume: Volume, *, synthetic: bool = False, provenance: dict | None = None,
              where: str | Path = "") -> bytes:
    """The PNG file for the single slice of ``volume``, as bytes."""
    from PIL import Image, PngImagePlugin

    rec = record(volume, synthetic=synthetic, provenance=provenance)
    img, axis = _plane(volume, where)
    rec["png_axis"] = axis
    dtype = integer_dtype(img, (np.uint8, np.uint16))
    if dtype is None:
        finite = img[np.isfinite(img)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        step = (hi - lo) / _LEVELS if hi > lo else 1.0
        img = np.clip(np.round((np.nan_to_num(img, nan=lo) - lo) / step), 0, _LEVELS)
        rec["png_values"] = {"offset": lo, "step": step}
        dtype = np.dtype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "ldm-med")
    if rec.get("synthetic"):
        info.add_text("Description", SYNTHETIC_NOTE)
    info.add_text("ldm-med", to_json(rec, where))
    options = {}
    sizes = [s for a, s in enumerate(volume.spacing) if a != axis]
    if spatial_unit(volume) == "mm" and min(sizes) > 0:
        options["dpi"] = (25.4 / sizes[0], 25.4 / sizes[1])
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=dtype)).save(buf, format="PNG", pnginfo=info, **options)
    return buf.getvalue()


def save_png(volume: Volume, path: str | Path, *, synthetic: bool = False,
             provenance: dict | None = None) -> None:
    """Write the one slice of ``volume`` as a greyscale PNG (8 or 16 bit), atomically."""
    from ldm_med.io.write import write_bytes

    path = Path(path)
    write_bytes(path, png_bytes(volume, synthetic=synthetic, provenance=provenance, where=path))
