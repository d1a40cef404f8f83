"""Writing a ``Volume`` in any supported format: ``save_volume_as`` picks the writer from the suffix.

Every writer checks the folder first (``InputError`` naming the path), writes a temporary file in the
target's folder and renames it over the target (``os.replace``: readers never see half a file), and is
deterministic: the same volume gives the same bytes (no dates or times in any header).

``synthetic=True`` marks the file in its own metadata (NIfTI ``descrip``, FITS ``SYNTHETI = T``, an MRC
label, the TIFF ImageDescription, a PNG text chunk) so that it cannot pass for acquired data;
``provenance`` (seed, settings, model) goes into the ldm-med record of ``ldm_med.io.formats``.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ldm_med.errors import InputError
from ldm_med.io.formats import FORMATS, all_suffixes, format_of, suffix_of
from ldm_med.volume import Volume

_WRITERS = {"mrc": ("ldm_med.io.mrc", "save_mrc"), "fits": ("ldm_med.io.fits", "save_fits"),
            "tiff": ("ldm_med.io.tiff", "save_tiff"), "png": ("ldm_med.io.png", "save_png")}


def require_output(path: str | Path, fmt: str | None = None, label: str = "") -> str:
    """The format ``path`` will be written in; ``InputError`` for an unknown suffix (without ``fmt``)
    or a folder that is not (and cannot be made) writable. ``label`` names the option (``-o``)."""
    where = f"{label} {path}" if label else str(path)
    name = format_of(path, fmt)
    if name is None:
        raise InputError(f"{where}: unknown output format; write {all_suffixes()}")
    require_writable(path, where)
    return name


def require_writable(path: str | Path, where: str | None = None) -> None:
    """``InputError`` unless the folder of ``path`` is (or can be made) a writable folder."""
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{where or path}: cannot write there ({folder} is not a writable folder)")
    if Path(path).is_dir():
        raise InputError(f"{where or path}: is a folder, not a file name")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) to write; renamed over ``path`` on success,
    removed on failure."""
    path = Path(path)
    require_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path}: cannot create the folder {path.parent} ({err.strerror or err})") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix_of(path)}")
    try:
        yield tmp
        os.replace(tmp, path)
    except PermissionError as err:
        raise InputError(f"{path}: cannot write there ({err.strerror or err})") from None
    except OSError as err:  # disk full, a folder gone: name the output, not the temporary file
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, *, gzip_it: bool = False) -> None:
    """Write ``data`` atomically; ``gzip_it``: gzip-compressed with no name and no time in the gzip
    header, so the bytes depend on ``data`` only."""
    if gzip_it:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_volume_as(volume: Volume, path: str | Path, *, synthetic: bool = False,
                   provenance: dict | None = None, fmt: str | None = None) -> Path:
    """Write ``volume`` in the format named by ``fmt`` (``nifti``, ``mrc``, ``fits``, ``tiff``, ``png``)
    or by the suffix of ``path``, atomically and deterministically. Returns the path written.

    Args:
        synthetic: mark the file as synthetic in its own metadata (also when
            ``volume.metadata["synthetic"]`` is True: a synthetic volume stays marked).
        provenance: JSON-serialisable dict (seed, settings, model) stored in the file and read back into
            ``metadata["provenance"]``; default: ``volume.metadata["provenance"]`` if any.

    Raises:
        InputError: unknown format, unwritable folder, data the format cannot hold (PNG: one slice).
    """
    name = require_output(path, fmt)
    if name == "nifti":
        from ldm_med.io.nifti import save_nifti

        marked = synthetic or volume.metadata.get("synthetic") is True or provenance is not None \
            or volume.metadata.get("provenance") is not None
        if not marked:
            save_nifti(volume, path)  # exactly what ldm-med always wrote
        else:
            _save_nifti_marked(volume, Path(path), synthetic=synthetic, provenance=provenance)
        return Path(path)
    import importlib

    module, func = _WRITERS[name]
    getattr(importlib.import_module(module), func)(volume, path, synthetic=synthetic, provenance=provenance)
    return Path(path)


def _save_nifti_marked(volume: Volume, path: Path, *, synthetic: bool, provenance: dict | None) -> None:
    """``save_nifti``, then ``synthetic`` / ``provenance`` added to its ldm-med header extension and
    ``descrip`` starting with "SYNTHETIC"."""
    import json

    import nibabel as nib

    from ldm_med.io.formats import record
    from ldm_med.io.nifti import save_nifti

    rec = record(volume, synthetic=synthetic, provenance=provenance)
    meta = dict(volume.metadata)
    if rec.get("synthetic"):
        descrip = str(meta.get("descrip") or f"ldm-med modality={meta.get('modality') or 'unknown'}")
        meta["descrip"] = descrip if descrip.startswith("SYNTHETIC") else f"SYNTHETIC {descrip}"
    stage = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.stage{suffix_of(path)}")
    try:
        save_nifti(volume.with_data(volume.data, metadata=meta), stage)
        img = nib.load(str(stage))
        exts = img.header.extensions
        for i, ext in enumerate(list(exts)):
            try:
                payload = json.loads(ext.get_content())
            except (ValueError, TypeError):
                continue
            if isinstance(payload, dict) and isinstance(payload.get("ldm_med"), dict):
                payload["ldm_med"].update({k: rec[k] for k in ("synthetic", "provenance") if k in rec})
                exts[i] = nib.nifti1.Nifti1Extension(ext.get_code(), json.dumps(payload).encode("utf-8"))
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))
    finally:
        stage.unlink(missing_ok=True)


__all__ = ["FORMATS", "atomic_path", "require_output", "require_writable",
           "save_volume_as", "write_bytes"]
