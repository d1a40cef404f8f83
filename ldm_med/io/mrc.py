"""MRC / MAP density maps and .mrcs image stacks (``mrcfile``; the MRC2014 format of cryo-EM).

Voxels: ``(i, j, k)`` = (column, row, section) as the file stores them; ``mapc/mapr/maps`` say which
world axis (X, Y, Z) each runs along and the affine follows (voxel size = ``cella / (mx, my, mz)`` in
angstrom, origin = the header ``origin``, or ``nxstart``.. times the voxel size when it is zero, as
ChimeraX reads it). The slice axis is the section axis (2). No unit conversion: the affine is in
angstrom (``metadata["spatial_unit"]``).

Writing: standard axis order, mode 1 (int16) or 6 (uint16) for integer values in range, else mode 2
(float32); header statistics set; ``.mrcs`` marked as an image stack. Labels say "ldm-med" and, for a
synthetic volume, "ldm-med SYNTHETIC ..."; the ldm-med record (provenance included) is the extended
header, as JSON text (``exttyp`` ``MRCO``, the MRC2014 code for MRC-software headers without a fixed
layout; mrcfile.validate accepts only the registered codes). The files pass ``mrcfile.validate``.
"""
from __future__ import annotations

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
    to_json,
    volume_from,
)
from ldm_med.volume import Volume

MRC_SUFFIXES = (".mrc", ".map", ".mrcs")
EXTTYP = b"MRCO"


def _header_affine(header) -> np.ndarray:
    """Voxel (column, row, section) -> world (X, Y, Z) angstrom, from the axis map and the cell."""
    axes = [int(header.mapc) - 1, int(header.mapr) - 1, int(header.maps) - 1]
    cell = np.array([float(header.cella.x), float(header.cella.y), float(header.cella.z)])
    grid = np.array([int(header.mx), int(header.my), int(header.mz)], dtype=float)
    size = np.where((grid > 0) & (cell > 0), cell / np.where(grid > 0, grid, 1), 1.0)
    origin = np.array([float(header.origin.x), float(header.origin.y), float(header.origin.z)])
    if not np.any(origin) or not np.all(np.isfinite(origin)):
        starts = [int(header.nxstart), int(header.nystart), int(header.nzstart)]
        origin = np.zeros(3)
        for voxel_axis, world in enumerate(axes):
            origin[world] = starts[voxel_axis] * size[world]
    affine = np.eye(4)
    for voxel_axis, world in enumerate(axes):
        affine[:3, voxel_axis] = 0.0
        affine[world, voxel_axis] = size[world]
    affine[:3, 3] = origin
    return affine


def _labels(header) -> list[str]:
    n = min(int(header.nlabl), 10)
    return [bytes(header.label[i]).decode("ascii", "replace").strip() for i in range(n)]


def _check_extended_header(path: Path) -> None:
    """Refuse a declared extended header (``nsymbt``) larger than the file before mrcfile reads it:
    mrcfile allocates the declared size first (2 GiB for a damaged 1 kB file)."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"{path}: cannot read the MRC file ({err.strerror or err})") from None
    if len(head) < 1024:
        return  # mrcfile names the short header
    endian = ">" if head[212] == 0x11 else "<"  # the machine stamp: 0x11 big-endian, 0x44 little
    (nsymbt,) = struct.unpack_from(endian + "i", head, 92)
    if nsymbt < 0 or 1024 + nsymbt > size:
        raise InputError(f"{path}: corrupt MRC header: it declares an extended header of {nsymbt} bytes "
                         f"in a file of {size} bytes")


def _open(path: Path):
    import mrcfile

    _check_extended_header(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = mrcfile.open(str(path), mode="r", permissive=False)
        except Exception as err:  # noqa: BLE001 - mrcfile raises ValueError, OSError, EOFError...
            raise read_failure(path, err, "MRC file") from None
    return mrc, [str(w.message).splitlines()[0] for w in caught]


def load_mrc(path: str | Path) -> Volume:
    """Read an MRC/MAP map (or a .mrcs stack) as a ``Volume`` (slice axis: the sections)."""
    path = Path(path)
    mrc, notes = _open(path)
    with mrc:
        header = mrc.header
        try:
            if sorted((int(header.mapc), int(header.mapr), int(header.maps))) != [1, 2, 3]:
                raise InputError(f"{path}: corrupt MRC header (mapc/mapr/maps "
                                 f"{int(header.mapc)}/{int(header.mapr)}/{int(header.maps)})")
            arr = np.asarray(mrc.data)
            ext = bytes(np.asarray(mrc.extended_header).tobytes()) if int(header.nsymbt) else b""
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - truncated data block
            raise read_failure(path, err, "MRC file") from None
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise InputError(f"{path}: a stack of {arr.shape[0]} volumes; ldm-med reads one volume")
            arr = arr[0]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.dtype.kind == "c" or arr.size == 0:
            raise InputError(f"{path}: MRC data of shape {arr.shape} and type {arr.dtype} is not one "
                             "real-valued volume")
        rec = parse_record(ext) if bytes(header.exttyp) == EXTTYP else {}
        affine = prefer_recorded(_header_affine(header), rec)
        labels = _labels(header)
        stack = bool(mrc.is_image_stack())
        info = {"mode": int(header.mode), "labels": "; ".join(labels) or "(none)",
                "kind": "image stack" if stack else "volume"}
    synthetic = any("SYNTHETIC" in label for label in labels)
    if synthetic and not rec.get("synthetic"):
        rec = {**rec, "synthetic": True}
    data = np.asarray(arr, dtype=np.float32).transpose(2, 1, 0)  # (section, row, column) -> (i, j, k)
    return volume_from(data, affine, path, fmt="mrc", rec=rec, slice_axis=2, modality="EM",
                       extra={"spatial_unit": "angstrom", "dtype": arr.dtype.name, "header": info,
                              "warnings": notes})


def _label_lines(rec: dict) -> list[bytes]:
    lines = ["ldm-med: written by ldm-med"]
    if rec.get("synthetic"):
        lines.insert(0, f"ldm-med {SYNTHETIC_NOTE}")
    prov = rec.get("provenance")
    if isinstance(prov, dict):
        for key in ("seed", "model", "preset"):
            if key in prov:
                lines.append(f"ldm-med provenance {key}={to_json(prov[key])}")
    return [line.encode("ascii", "replace")[:80] for line in lines[:10]]


def save_mrc(volume: Volume, path: str | Path, *, synthetic: bool = False,
             provenance: dict | None = None) -> None:
    """Write ``volume`` as MRC2014 (``.mrc``, ``.map``; ``.mrcs``: an image stack), atomically.

    The affine is written as voxel size and origin (angstrom, no conversion); an affine that is not
    axis-aligned is kept exactly in the ldm-med record (other programs see its spacing and origin).
    """
    import mrcfile

    from ldm_med.io.write import atomic_path

    path = Path(path)
    rec = record(volume, synthetic=synthetic, provenance=provenance)
    arr = volume.data.transpose(2, 1, 0)  # (i, j, k) -> (section, row, column)
    dtype = integer_dtype(arr, (np.int16, np.uint16)) or np.dtype(np.float32)
    ext = to_json(rec, path).encode("ascii")
    ext += b" " * (-len(ext) % 4)
    with atomic_path(path) as tmp:
        with mrcfile.new(str(tmp), overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(arr, dtype=dtype))
            if path.name.lower().endswith(".mrcs"):
                mrc.set_image_stack()
            mrc.voxel_size = tuple(float(v) for v in volume.spacing)
            mrc.header.origin = tuple(float(v) for v in volume.affine[:3, 3])
            mrc.set_extended_header(np.frombuffer(ext, dtype="V1"))
            mrc.header.exttyp = EXTTYP
            labels = _label_lines(rec)
            for i, label in enumerate(labels):
                mrc.header.label[i] = label
            mrc.header.nlabl = len(labels)
            mrc.update_header_stats()


def validate_mrc(path: str | Path) -> tuple[bool, str]:
    """``mrcfile.validate`` on ``path``: (valid, its report)."""
    import io

    import mrcfile

    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = bool(mrcfile.validate(str(path), print_file=out))
    return ok, out.getvalue()
