"""NIfTI input and output (nibabel).

Reading keeps nibabel's best affine (sform, else qform, else pixdim). A 4D file needs a volume
index. Writing sets sform and qform (code 1, scanner) from the ``Volume`` affine, stores int16 when
the values are integers in range (float32 otherwise), and replaces the target atomically.

NIfTI has no place for the ``acquired`` mask: ldm-med keeps it (and the slice axis) in a small JSON
comment extension that other tools ignore and ``load_nifti`` reads back.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIBABEL_SUFFIXES = NIFTI_SUFFIXES + (".mgz", ".mgh", ".hdr", ".img")
_COMMENT_CODE = 6  # NIFTI_ECODE_COMMENT
_EXT_KEY = "ldm_med"
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
        if ext.get_code() != _COMMENT_CODE:
            continue
        raw = ext.get_content()
        try:
            payload = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(payload, dict) and isinstance(payload.get(_EXT_KEY), dict):
            return payload[_EXT_KEY]
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


def load_nifti(path: str | Path, *, volume_index: int | None = None) -> Volume:
    """Read a NIfTI (or other nibabel) image as a ``Volume`` with nibabel's best affine."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise InputError(f"{path}: not a readable NIfTI image ({err})") from None
    try:
        arr, chosen = _select_volume(path, img, volume_index)
        data = np.asarray(arr, dtype=np.float32)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - truncated / corrupt data blocks
        raise InputError(f"{path}: cannot read the image data ({err})") from None
    stored = _read_extension(img)
    slice_axis = stored.get("slice_axis", _slice_axis(img))
    if not (isinstance(slice_axis, int) and 0 <= slice_axis <= 2):
        slice_axis = 2
    acquired = np.ones(data.shape[slice_axis], dtype=bool)
    missing = [k for k in stored.get("missing", []) if isinstance(k, int)
               and 0 <= k < acquired.size]
    acquired[missing] = False
    modality = stored.get("modality") or guess_modality(data)
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
        _COMMENT_CODE, json.dumps({_EXT_KEY: payload}).encode("utf-8")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
