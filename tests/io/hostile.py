"""Hostile and corrupt input files for the reliability tests (test helper, not a test module).

NIfTI-1 header fields are patched in place at their offsets from the standard (``nifti1.h``), so a file
can declare anything without nibabel's writer refusing it.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

# offset, struct format of the NIfTI-1 header fields the fuzzers mutate
NIFTI_FIELDS = {
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow": (280, "<12f"),
}


def small_nifti_bytes(shape=(8, 7, 5), affine=None, dtype=np.int16, seed: int = 0) -> bytes:
    """A valid single-file NIfTI-1 image, as bytes."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1000, shape).astype(dtype)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.5, 1.0]) if affine is None else affine)
    img.set_sform(img.affine, code=1)
    return img.to_bytes()


def patch_nifti(raw: bytes, **fields) -> bytes:
    """``raw`` with header fields replaced (values as tuples for array fields)."""
    out = bytearray(raw)
    for name, value in fields.items():
        offset, fmt = NIFTI_FIELDS[name]
        values = value if isinstance(value, (tuple, list)) else (value,)
        struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def write(path: Path, raw: bytes, *, gz: bool | None = None) -> Path:
    """Write ``raw`` to ``path`` (gzip-compressed when the name ends in .gz, unless ``gz`` says)."""
    if gz is None:
        gz = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def nan_affine_nifti(path: Path) -> Path:
    """A NIfTI whose sform holds a NaN (nibabel refuses to write one, so the header is patched)."""
    raw = small_nifti_bytes()
    srow = list(struct.unpack_from("<12f", raw, 280))
    srow[0] = float("nan")
    return write(path, patch_nifti(raw, srow=tuple(srow), sform_code=1))


def corrupt_vr(path: Path, tag: tuple[int, int] = (0x0008, 0x0060), vr: bytes = b"ZZ") -> None:
    """Replace the VR of an explicit-VR little-endian element in a DICOM file, in place."""
    raw = bytearray(path.read_bytes())
    at = raw.find(struct.pack("<HH", *tag), 132)
    assert at > 0, f"tag {tag} not in {path}"
    raw[at + 4:at + 6] = vr
    path.write_bytes(bytes(raw))
