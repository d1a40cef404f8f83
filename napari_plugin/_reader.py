"""napari reader: NIfTI, MRC/MAP, FITS, TIFF and PNG files, DICOM folders and DICOM files, through
``ldm_med.load_volume``.

``get_reader`` only looks at names and file headers (no pixel data, no torch) and returns ``None``
for anything else, without raising. A folder holding several DICOM series opens the largest; the
others are named in a notification and in the layer's ``metadata["ldm_med"]["other_series"]``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# ldm_med.io.formats.FORMATS, repeated so that probing a path imports nothing of ldm_med
FILE_SUFFIXES = NIFTI_SUFFIXES + (".mrc", ".map", ".mrcs", ".fits", ".fit", ".fts", ".fits.gz", ".tif",
                                  ".tiff", ".png")
_MAX_PROBE = 200  # files to look at before deciding that a folder holds no DICOM


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[tuple]] | None:
    """The reader for ``path`` if it is a NIfTI, MRC, FITS, TIFF or PNG file, a DICOM file or a folder
    with DICOM files, else ``None``. Never raises."""
    try:
        if isinstance(path, (list, tuple)):
            if len(path) == 1:
                path = path[0]
            elif path and all(_is_scan_file(Path(p)) for p in path):
                return read
            else:
                return None
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            return None
        p = Path(path)
        if p.is_dir():
            return read if _folder_has_dicom(p) else None
        if p.is_file() and (_is_scan_file(p) or _is_dicom_file(p)):
            return read
    except Exception:  # a reader probe must never raise (permissions, odd paths, ...)
        return None
    return None


def read(path: str | list[str]) -> list[tuple]:
    """Layer data for a NIfTI, MRC, FITS, TIFF or PNG file, a DICOM folder or a DICOM file (its series)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [volume_layer(Path(p)) for p in paths]


def volume_layer(path: Path, name: str | None = None, volume=None) -> tuple:
    """One image ``LayerDataTuple`` for the scan at ``path`` (or for ``volume`` read from it)."""
    import ldm_med
    from napari_plugin._layers import format_slices, layer_from_volume

    volume = volume if volume is not None else ldm_med.load_volume(path)
    extra = {"source": str(path)}
    n_series = int(volume.metadata.get("n_series", 1) or 1)
    if n_series > 1:
        chosen = int(volume.metadata.get("series_index", 0) or 0)
        others = [i for i in range(1, n_series + 1) if i != chosen]
        extra["other_series"] = others
        _notify(f"{path.name}: {n_series} image series; opened {volume.metadata.get('series_choice')}. "
                f"Others: series {format_slices(others)} (ldm_med.load_volume(path, series=N); "
                f"`ldm-med info {path}` lists them)")
    if volume.missing.size:
        extra["note"] = f"slices {format_slices(volume.missing)} missing"
    return layer_from_volume(volume, name or _stem(path), extra)


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # used without napari (scripts)
        print(message)
        return
    show_info(message)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(FILE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_scan_file(path: Path) -> bool:
    """A file ldm-med reads by its suffix (NIfTI, MRC, FITS, TIFF, PNG) whose first bytes fit the format;
    colour PNG images are left to napari's own reader."""
    name = path.name.lower()
    if not name.endswith(FILE_SUFFIXES):
        return False
    if name.endswith(NIFTI_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fp:
            head = fp.read(1024)
    except OSError:
        return False
    if name.endswith(".gz"):
        return head[:2] == b"\x1f\x8b"
    if name.endswith(".png"):  # signature, IHDR first, colour type 0 (greyscale)
        return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[25:26] == b"\x00"
    if name.endswith((".tif", ".tiff")):
        return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    if name.endswith((".fits", ".fit", ".fts")):
        return head.startswith(b"SIMPLE  =")
    return len(head) == 1024  # MRC: a 1024-byte header at least


def _is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file ('DICM' after the 128-byte preamble), or a ``.dcm`` file."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fp:
            return fp.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _folder_has_dicom(folder: Path) -> bool:
    seen = 0
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            if _is_dicom_file(Path(root) / name):
                return True
            seen += 1
            if seen >= _MAX_PROBE:
                return False
    return False
