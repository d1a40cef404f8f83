"""NIfTI input and output (nibabel).

Reading keeps nibabel's best affine (sform, else qform, else pixdim). A 4D file needs a volume
index. Writing sets sform and qform (code 1, scanner) from the ``Volume`` affine, stores int16 when
the values are integers in range (float32 otherwise), and replaces the target atomically.

NIfTI has no place for the ``acquired`` mask: ldm-med keeps it (and the slice axis) in a small JSON
comment extension that other tools ignore and ``load_nifti`` reads back.
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.io import limits
from ldm_med.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIBABEL_SUFFIXES = NIFTI_SUFFIXES + (".mgz", ".mgh", ".hdr", ".img")
EXTENSION_CODE = 6  # NIFTI_ECODE_COMMENT
EXTENSION_KEY = "ldm_med"
_PERCENTILE_SAMPLE = 1_000_000


def has_suffix(path: str | Path, suffixes: tuple[str, ...]) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in suffixes)


def require_nifti_path(path: str | Path, label: str = "") -> None:
    """``InputError`` unless ``path`` ends in .nii or .nii.gz and its folder is (or can be made)
    writable; ``label`` names the option (``-o``)."""
    where = f"{label} {path}" if label else str(path)
    if not has_suffix(path, NIFTI_SUFFIXES):
        raise InputError(f"{where}: output must be a NIfTI file ending in .nii or .nii.gz")
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{where}: cannot write there ({folder} is not a writable folder)")


def guess_modality(data: np.ndarray) -> str:
    """"CT" if the 1st percentile is below -500 (air in HU), else "MR"; "unknown" if blank."""
    flat = np.asarray(data).ravel()
    flat = flat[:: max(1, flat.size // _PERCENTILE_SAMPLE)]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0 or flat.min() == flat.max():
        return "unknown"
    return "CT" if np.percentile(flat, 1) < -500 else "MR"


def _slice_axis(img) -> int:
    """The header's slice dimension, else the clearly thickest axis, else 2."""
    slice_dim = img.header.get_dim_info()[2] if hasattr(img.header, "get_dim_info") else None
    if slice_dim is not None and 0 <= slice_dim <= 2:
        return int(slice_dim)
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    if zooms.size == 3:
        order = np.argsort(zooms)
        if zooms[order[2]] > 1.2 * zooms[order[1]]:
            return int(order[2])
    return 2


def _read_extension(img) -> dict:
    for ext in getattr(img.header, "extensions", []):
        if ext.get_code() != EXTENSION_CODE:
            continue
        raw = ext.get_content()
        try:
            payload = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        if isinstance(payload, dict) and isinstance(payload.get(EXTENSION_KEY), dict):
            return payload[EXTENSION_KEY]
    return {}


def _select_volume(path: Path, img, volume_index: int | None):
    """The 3D array proxy to read: 2D gets a singleton axis, 4D needs ``volume_index``."""
    shape = tuple(int(v) for v in img.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 4:
        raise InputError(f"{path}: {len(shape)}D image of shape {shape}; only 3D and 4D are read")
    if len(shape) <= 3:
        if volume_index not in (None, 0):
            raise InputError(f"{path}: volume index {volume_index} given but the image is 3D "
                             f"(shape {shape})")
        arr = np.asanyarray(img.dataobj).reshape(shape)
        return arr.reshape(shape + (1,) * (3 - len(shape))), None
    n_vol = shape[3]
    if volume_index is None:
        if n_vol == 1:
            return np.asanyarray(img.dataobj).reshape(shape[:3]), None
        raise InputError(f"{path}: 4D image of shape {shape} holds {n_vol} volumes; pass "
                         f"--volume-index N (volume_index=N) with N in 0..{n_vol - 1}")
    if not 0 <= volume_index < n_vol:
        raise InputError(f"{path}: volume index {volume_index} out of range 0..{n_vol - 1} "
                         f"for shape {shape}")
    return img.dataobj[..., volume_index].reshape(shape[:3]), volume_index


def _data_file(img) -> tuple[Path | None, bool]:
    """The file holding the voxels (the .img of a pair) and whether it is gzip-compressed."""
    holder = getattr(img, "file_map", {}).get("image")
    name = getattr(holder, "filename", None)
    if not name:
        return None, False
    return Path(name), str(name).lower().endswith((".gz", ".mgz"))


def _check_header(path: Path, img) -> None:
    """Declared sizes against the file and the allocation cap, and the geometry, before any read."""
    try:
        shape = tuple(int(v) for v in img.shape)
        itemsize = int(img.get_data_dtype().itemsize)
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
    except MemoryError:  # an allocation the size checks missed: a bug, not bad input
        raise
    except Exception as err:  # noqa: BLE001 - a header nibabel accepted but cannot describe
        raise InputError(f"{path}: corrupt header ({err})") from None
    if not shape or min(shape) < 1:
        raise InputError(f"{path}: the header declares an empty image (shape {shape})")
    declared = math.prod(shape) * max(itemsize, 1)
    limits.check_allocation(declared + 4 * math.prod(shape[:3]), path, f"an image of shape {shape}")
    data_file, compressed = _data_file(img)
    if data_file is not None:
        try:
            size = os.path.getsize(data_file)
        except OSError as err:
            raise InputError(f"{data_file}: cannot read the image data ({err.strerror or err})") from None
        limits.check_declared(path, declared, max(0, size - (0 if compressed else offset)),
                              compressed=compressed, what=f"the header (shape {shape})")
    limits.check_affine(img.affine, path)


class _NibabelFixes(logging.Handler):
    """Collects what nibabel repairs in a header while loading (it logs it to stderr otherwise)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _collect_fixes() -> Iterator[_NibabelFixes]:
    logger = logging.getLogger("nibabel.global")
    fixes, saved = _NibabelFixes(), logger.handlers[:]
    logger.handlers = [fixes]
    try:
        yield fixes
    finally:
        logger.handlers = saved


def _pixdim_problem(img, fixes: list[str]) -> str | None:
    """nibabel replaces zero or negative pixdim[1..3] by 1 or abs(); refuse that when the affine is
    built from pixdim (no sform), since the spacing would then be a guess."""
    hdr = img.header
    if "sform_code" not in hdr or int(hdr["sform_code"]) > 0:
        return None
    fix = next((m for m in fixes if "pixdim" in m), None)
    return None if fix is None else f"invalid geometry: {fix.split(';')[0]} (the voxel spacing is unknown)"


def _check_extensions(path: Path) -> None:
    """Refuse a NIfTI-1/2 header extension whose declared size does not fit in the file, before nibabel
    reads it (it allocates the declared size first: 474 MiB for a damaged 672-byte file)."""
    import gzip
    import struct

    from ldm_med.io import limits

    compressed = path.name.lower().endswith(".gz")
    size = os.path.getsize(path)
    room = size * limits.GZIP_MAX_RATIO if compressed else size
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            head = fh.read(552)
            for endian in ("<", ">"):
                if len(head) >= 4 and struct.unpack_from(endian + "i", head, 0)[0] in (348, 540):
                    break
            else:
                return  # not a NIfTI header: nibabel names the problem
            nifti1 = struct.unpack_from(endian + "i", head, 0)[0] == 348
            offset = 352 if nifti1 else 544
            if len(head) < offset or head[offset - 4] == 0:
                return  # no extensions
            vox = struct.unpack_from(endian + ("f" if nifti1 else "q"), head, 108 if nifti1 else 168)[0]
            end = vox if vox > offset else room  # extensions run up to the voxel data (.hdr: to the end)
            for _ in range(4096):  # extensions are chained: size, code, content
                if offset + 8 > end:
                    return
                fh.seek(offset)
                pair = fh.read(8)
                if len(pair) < 8:
                    return
                esize = struct.unpack(endian + "i", pair[:4])[0]
                if esize < 8 or offset + esize > min(end, room):
                    raise InputError(f"{path}: corrupt NIfTI header: an extension declares {esize} bytes, "
                                     f"but the file holds {limits.human(size)}")
                offset += esize
    except (OSError, EOFError, gzip.BadGzipFile, struct.error):
        return  # not gzip after all, or damaged: nibabel names the problem


def open_nifti(path: str | Path):
    """``nibabel.load`` with every failure as ``InputError`` naming the file, and the header checked
    (sizes against the file and ``limits``, geometry) before any voxel is read."""
    import nibabel as nib

    path = Path(path)
    try:
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: empty file (0 bytes), not a NIfTI image")
        _check_extensions(path)
        with _collect_fixes() as fixes:
            img = nib.load(str(path))
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied (cannot read the file)") from None
    except MemoryError:  # an allocation the size checks missed: a bug, not bad input
        raise
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a readable NIfTI image ({detail})") from None
    problem = _pixdim_problem(img, fixes.messages)
    if problem:
        raise InputError(f"{path}: {problem}")
    _check_header(path, img)
    return img


def load_nifti(path: str | Path, *, volume_index: int | None = None) -> Volume:
    """Read a NIfTI (or other nibabel) image as a ``Volume`` with nibabel's best affine."""
    path = Path(path)
    img = open_nifti(path)
    try:
        if img.get_data_dtype().kind not in "biuf":
            raise InputError(f"{path}: voxels of type {img.get_data_dtype()} (complex or RGB) are not "
                             "supported; store one real value per voxel")
        arr, chosen = _select_volume(path, img, volume_index)
        with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf (reported)
            data = np.asarray(arr, dtype=np.float32)
    except InputError:
        raise
    except MemoryError:  # an allocation the size checks missed: a bug, not bad input
        raise
    except Exception as err:  # noqa: BLE001 - truncated / corrupt data blocks
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot read the image data ({detail})") from None
    stored = _read_extension(img)
    slice_axis = stored.get("slice_axis", _slice_axis(img))
    if not (isinstance(slice_axis, int) and 0 <= slice_axis <= 2):
        slice_axis = 2
    acquired = np.ones(data.shape[slice_axis], dtype=bool)
    recorded = stored.get("missing")
    missing = [k for k in (recorded if isinstance(recorded, list) else []) if isinstance(k, int)
               and 0 <= k < acquired.size]
    acquired[missing] = False
    modality = stored.get("modality") if isinstance(stored.get("modality"), str) else None
    modality = modality or guess_modality(data)
    metadata = {
        "modality": modality, "modality_guessed": "modality" not in stored,
        "source": str(path), "warnings": [], "skipped": [],
        "dtype": str(img.get_data_dtype()), "missing_recorded": "missing" in stored,
    }
    if chosen is not None:
        metadata["volume_index"] = chosen
    return Volume(data=data, affine=np.asarray(img.affine, dtype=np.float64),
                  slice_axis=slice_axis, acquired=acquired, metadata=metadata)


def _storage_array(data: np.ndarray) -> np.ndarray:
    """int16 when every value is a finite integer in int16 range, else float32."""
    info = np.iinfo(np.int16)
    if data.size and np.all(np.isfinite(data)) and data.min() >= info.min \
            and data.max() <= info.max and np.array_equal(data, np.round(data)):
        return data.astype(np.int16)
    return data.astype(np.float32, copy=False)


def save_nifti(volume: Volume, path: str | Path, *, stack: np.ndarray | None = None) -> None:
    """Write ``volume`` as NIfTI-1 (.nii or .nii.gz), atomically (temporary file + rename).

    ``stack``: ``(N, *volume.shape)`` volumes with ``volume``'s geometry (posterior samples, say),
    written instead of ``volume.data`` as one 4D image ``(X, Y, Z, N)``. The ldm-med header extension
    keeps the slice axis, the missing slices, the modality, and what ``metadata["reconstruction"]``
    and ``metadata["content"]`` say (how the voxels were made, what they are).
    """
    import nibabel as nib

    path = Path(path)
    require_nifti_path(path)
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    data = volume.data if stack is None else np.moveaxis(np.asarray(stack), 0, -1)
    img = nib.Nifti1Image(_storage_array(data), volume.affine)
    header = img.header
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)  # nearest rigid approximation if the affine is sheared
    header.set_xyzt_units("mm")
    header.set_dim_info(slice=volume.slice_axis)
    modality = str(volume.metadata.get("modality") or "unknown")
    descrip = volume.metadata.get("descrip") or f"ldm-med modality={modality}"
    header["descrip"] = descrip[:79].encode("ascii", "replace")
    payload = {"slice_axis": int(volume.slice_axis), "missing": volume.missing.tolist()}
    if not volume.metadata.get("modality_guessed"):
        payload["modality"] = modality
    for key in ("content", "reconstruction"):
        if key in volume.metadata:
            payload[key] = volume.metadata[key]
    header.extensions.append(nib.nifti1.Nifti1Extension(
        EXTENSION_CODE, json.dumps({EXTENSION_KEY: payload}).encode("utf-8")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except OSError as err:  # disk full, a folder gone: name the output, not the temporary file
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
