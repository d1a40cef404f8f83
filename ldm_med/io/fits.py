"""FITS images and cubes (``astropy.io.fits``, imported only here: it is slow to import).

Voxels: ``(i, j, k)`` = (NAXIS1, NAXIS2, NAXIS3); a 2D image is a volume with one slice. The first HDU
holding an image is read (trailing axes of length 1, such as a STOKES axis, are dropped). The affine is
the linear WCS: ``CDi_j``, else ``CDELTi`` x ``PCi_j`` (identity by default), and ``CRVALi`` at pixel
``CRPIXi`` (FITS pixels count from 1); a celestial projection (``RA---TAN``) is linearised at the
reference pixel. ``metadata["wcs"]`` keeps ``ctype``, ``cunit`` and ``crpix`` so they are written back.
The slice axis is the spectral axis (``CTYPE`` FREQ, WAVE, VRAD, ...), else the third.

Writing: ``CTYPE``/``CUNIT`` from ``metadata["wcs"]`` when present (a generator can set, say,
``{"ctype": ["RA---TAN", "DEC--TAN", "WAVE"], "cunit": ["deg", "deg", "nm"]}``), else ``LINEAR`` axes in
the volume's unit; ``CRPIX``/``CRVAL``/``CDELT`` (and ``PCi_j`` when the affine is not diagonal) from the
affine. ``ORIGIN = 'ldm-med'``, ``SYNTHETI = T`` for synthetic data, the ldm-med record as JSON in the
long-string card ``LDMMETA`` (with ``LONGSTRN``), provenance also as ``HISTORY`` lines. No ``DATE``: the
same volume gives the same bytes (``.fits.gz`` too). The files pass ``fitsverify`` with no warnings.
"""
from __future__ import annotations

import io
import warnings
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

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
SPECTRAL_TYPES = ("FREQ", "ENER", "WAVN", "VRAD", "WAVE", "VOPT", "ZOPT", "AWAV", "VELO", "BETA", "FELO")
_UNITS = {"mm": "mm", "angstrom": "Angstrom", "um": "um", "micron": "um", "nm": "nm", "m": "m",
          "cm": "cm", "pixel": "pixel", "deg": "deg"}


def _first_image(hdul, path: Path):
    for hdu in hdul:
        if getattr(hdu, "is_image", False) and hdu.header.get("NAXIS", 0) >= 2:
            return hdu
    raise InputError(f"{path}: no image HDU with 2 or 3 axes in this FITS file")


def _linear_wcs(header, naxis: int) -> np.ndarray:
    """Voxel (0-based) -> world, the linear part of the WCS (a 4x4 affine; unused axes identity)."""
    n = 3
    cdelt = np.array([float(header.get(f"CDELT{i + 1}", 1.0)) for i in range(n)])
    has_cd = any(f"CD{i + 1}_{j + 1}" in header for i in range(naxis) for j in range(naxis))
    m = np.eye(n)
    for i in range(n):
        for j in range(n):
            key = f"{'CD' if has_cd else 'PC'}{i + 1}_{j + 1}"
            if key in header:
                m[i, j] = float(header[key])
            elif has_cd:
                m[i, j] = 0.0 if i < naxis and j < naxis else float(i == j)
    if not has_cd:
        m = np.diag(cdelt) @ m
    crpix = np.array([float(header.get(f"CRPIX{i + 1}", 0.0)) for i in range(n)])
    crval = np.array([float(header.get(f"CRVAL{i + 1}", 0.0)) for i in range(n)])
    crpix[naxis:], crval[naxis:] = 1.0, 0.0
    affine = np.eye(4)
    affine[:3, :3] = m
    affine[:3, 3] = crval - m @ (crpix - 1.0)
    return affine


def _wcs_record(header, naxis: int) -> dict:
    return {"ctype": [str(header.get(f"CTYPE{i + 1}", "")) for i in range(naxis)],
            "cunit": [str(header.get(f"CUNIT{i + 1}", "")) for i in range(naxis)],
            "crpix": [float(header.get(f"CRPIX{i + 1}", 0.0)) for i in range(naxis)]}


def load_fits(path: str | Path) -> Volume:
    """Read the first image of a FITS file (2D image or 3D cube) as a ``Volume``."""
    from astropy.io import fits

    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(str(path), memmap=False) as hdul:
                hdu = _first_image(hdul, path)
                header = hdu.header.copy()
                data = hdu.data
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - astropy raises OSError, ValueError, TypeError...
            raise read_failure(path, err, "FITS file") from None
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    if truncated or data is None:
        raise InputError(f"{path}: truncated or corrupt FITS file ({(truncated or ['no data'])[0][:200]})")
    arr = np.asarray(data)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "iuf" or arr.size == 0:
        raise InputError(f"{path}: FITS image of shape {arr.shape} ({arr.dtype}) is not a 2D image or a "
                         "3D cube of numbers")
    try:
        return _as_volume(arr, header, path, caught)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged card raises VerifyError, ValueError, KeyError...
        raise read_failure(path, err, "FITS header") from None


def _as_volume(arr: np.ndarray, header, path: Path, caught: list) -> Volume:
    """The image and its header (WCS, ldm-med record) as a ``Volume``."""
    naxis = arr.ndim
    vol = arr.T if naxis == 3 else arr.T[:, :, None]  # numpy (NAXIS3, NAXIS2, NAXIS1) -> (i, j, k)
    wcs = _wcs_record(header, naxis)
    spectral = [i for i, c in enumerate(wcs["ctype"]) if c.upper()[:4] in SPECTRAL_TYPES]
    units = set(wcs["cunit"][:2])
    unit = units.pop() if len(units) == 1 else ""
    rec = parse_record(str(header.get("LDMMETA", "")))
    if header.get("SYNTHETI") is True:
        rec = {**rec, "synthetic": True}
    extra = {"wcs": wcs, "dtype": arr.dtype.name,
             "header": {"WCS axes": ", ".join(c or "(none)" for c in wcs["ctype"])},
             "warnings": [str(w.message).splitlines()[0][:200] for w in caught]}
    if unit:
        extra["spatial_unit"] = {v: k for k, v in _UNITS.items()}.get(unit, unit)
    axis = spectral[0] if spectral and naxis == 3 else 2
    affine = prefer_recorded(_linear_wcs(header, naxis), rec, axes=naxis)
    return volume_from(vol, affine, path, fmt="fits", rec=rec, slice_axis=axis,
                       modality="ASTRO", extra=extra)


def _axes_types(volume: Volume, naxis: int) -> tuple[list[str], list[str], list[float]]:
    """CTYPE, CUNIT and CRPIX per axis: the volume's ``metadata["wcs"]`` if it fits, else LINEAR."""
    wcs = volume.metadata.get("wcs")
    if isinstance(wcs, dict) and len(wcs.get("ctype", [])) == naxis:
        ctype = [str(c)[:68] for c in wcs["ctype"]]
        cunit = [str(u)[:68] for u in wcs.get("cunit", [""] * naxis)][:naxis]
        crpix = wcs.get("crpix") or [1.0] * naxis
        if len(crpix) != naxis or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in crpix):
            crpix = [1.0] * naxis
        return ctype, cunit + [""] * (naxis - len(cunit)), [float(v) for v in crpix]
    unit = _UNITS.get(spatial_unit(volume) or "", "")
    return ["LINEAR"] * naxis, [unit] * naxis, [1.0] * naxis


def _wcs_cards(volume: Volume, naxis: int) -> list[tuple[str, object, str]]:
    ctype, cunit, crpix = _axes_types(volume, naxis)
    m = volume.affine[:naxis, :naxis]
    cdelt = np.linalg.norm(volume.affine[:3, :naxis], axis=0)
    cdelt = np.where(cdelt > 0, cdelt, 1.0)
    cdelt = np.where(np.abs(np.diag(m)) > 0, np.sign(np.diag(m)) * cdelt, cdelt)  # keep a flipped axis
    crval = volume.affine[:naxis, :naxis] @ (np.array(crpix) - 1.0) + volume.affine[:naxis, 3]
    cards: list[tuple[str, object, str]] = [("WCSAXES", naxis, "number of WCS axes")]
    for i in range(naxis):
        n = i + 1
        cards.append((f"CTYPE{n}", ctype[i], f"axis {n} type"))
        if cunit[i]:
            cards.append((f"CUNIT{n}", cunit[i], f"axis {n} unit"))
        cards += [(f"CRPIX{n}", crpix[i], "reference pixel (1-based)"),
                  (f"CRVAL{n}", float(crval[i]), "world value at CRPIX"),
                  (f"CDELT{n}", float(cdelt[i]), "increment per pixel")]
    pc = m / cdelt[:, None]
    if not np.allclose(pc, np.eye(naxis), rtol=0, atol=1e-12):
        cards += [(f"PC{i + 1}_{j + 1}", float(pc[i, j]), "linear transformation")
                  for i in range(naxis) for j in range(naxis)]
    return cards


def fits_bytes(volume: Volume, *, synthetic: bool = False, provenance: dict | None = None,
               where: str | Path = "") -> bytes:
    """The FITS file for ``volume`` (one primary HDU), as bytes."""
    from astropy.io import fits

    rec = record(volume, synthetic=synthetic, provenance=provenance)
    naxis = 2 if volume.shape[2] == 1 else 3
    if naxis == 3:
        rec.pop("affine")  # the WCS holds it at full precision (a 2D image keeps its k axis in the record)
    arr = volume.data[:, :, 0].T if naxis == 2 else volume.data.T  # (i, j, k) -> (NAXIS3, NAXIS2, NAXIS1)
    dtype = integer_dtype(arr, (np.int16, np.int32)) or np.dtype(np.float32)
    hdu = fits.PrimaryHDU(np.ascontiguousarray(arr, dtype=dtype))
    header = hdu.header
    for key, value, comment in _wcs_cards(volume, naxis):
        header[key] = (value, comment)
    header["ORIGIN"] = ("ldm-med", "software that wrote this file")
    if rec.get("synthetic"):
        header["SYNTHETI"] = (True, SYNTHETIC_NOTE[:47])
    header["LONGSTRN"] = ("OGIP 1.0", "the OGIP long-string convention may be used")
    header.add_comment("LDMMETA: the ldm-med record (JSON: geometry, slice axis, provenance)")
    header["LDMMETA"] = to_json(rec, where)  # no comment: it would be cut when the JSON nearly fills a card
    for key, value in (rec.get("provenance") or {}).items():
        header.add_history(f"ldm-med provenance {key}={to_json(value)}"[:72])
    buf = io.BytesIO()
    hdu.writeto(buf, output_verify="exception")
    return buf.getvalue()


def save_fits(volume: Volume, path: str | Path, *, synthetic: bool = False,
              provenance: dict | None = None) -> None:
    """Write ``volume`` as FITS (``.fits``, ``.fit``, ``.fts``; ``.fits.gz`` gzip-compressed), atomically:
    a 2D image when it has one slice along ``k``, else a 3D cube."""
    from ldm_med.io.write import write_bytes

    path = Path(path)
    data = fits_bytes(volume, synthetic=synthetic, provenance=provenance, where=path)
    write_bytes(path, data, gzip_it=path.name.lower().endswith(".gz"))
