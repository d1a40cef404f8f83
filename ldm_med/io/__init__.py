"""Volume input/output: NIfTI, MRC, FITS, TIFF, PNG files and DICOM folders -> ``Volume`` -> files.

``load_volume`` dispatches on the path: a NIfTI file (``.nii``/``.nii.gz``, or another format
nibabel reads), an MRC/MAP map (``.mrc``, ``.map``, ``.mrcs``), a FITS image or cube (``.fits``, ``.fit``,
``.fts``, ``.fits.gz``), a TIFF stack (``.tif``, ``.tiff``), a PNG image (``.png``), a DICOM folder, or
one DICOM file (its folder is scanned and the series holding the file is read). ``describe`` is the
report behind ``ldm-med info``; ``save_volume_as`` writes any of the file formats (``ldm_med.io.write``).
"""
from __future__ import annotations

from pathlib import Path

from ldm_med.errors import InputError
from ldm_med.io.formats import SCIENCE_SUFFIXES, all_suffixes, format_of
from ldm_med.io.nifti import NIBABEL_SUFFIXES, has_suffix, load_nifti, save_nifti
from ldm_med.io.write import save_volume_as
from ldm_med.volume import Volume

__all__ = ["describe", "is_dicom_input", "load_volume", "save_nifti", "save_volume_as", "select_series"]
_READERS = {"mrc": ("ldm_med.io.mrc", "load_mrc"), "fits": ("ldm_med.io.fits", "load_fits"),
            "tiff": ("ldm_med.io.tiff", "load_tiff"), "png": ("ldm_med.io.png", "load_png")}


def _looks_like_dicom(path: Path) -> bool:
    from ldm_med.io import dicom_headers

    try:
        with open(path, "rb") as fp:
            if fp.read(132)[128:] == b"DICM":
                return True
        dicom_headers.read_header(path)
        return True
    except (OSError, dicom_headers.Skip):
        return False


def _dicom_target(path: Path) -> tuple[Path, Path | None] | None:
    """(folder to scan, DICOM file named by the user or None); None if not DICOM input."""
    if path.is_dir():
        return path, None
    if not has_suffix(path, NIBABEL_SUFFIXES + SCIENCE_SUFFIXES) and _looks_like_dicom(path):
        return path.parent, path
    return None


def is_dicom_input(path: str | Path) -> bool:
    """Whether ``path`` is read as DICOM: a folder, or a file that is not NIfTI and holds DICOM."""
    return _dicom_target(Path(path)) is not None


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")


def _unsupported(path: Path) -> InputError:
    return InputError(f"{path}: unsupported file type (expected {all_suffixes()}, a DICOM file or a "
                      "folder of DICOM files)")


def _science_file(path: Path, volume_index: int | None, series: str | None) -> Volume | None:
    """The volume in an MRC, FITS, TIFF or PNG file; None for any other path."""
    import importlib

    fmt = format_of(path) if path.is_file() else None
    if fmt not in _READERS:
        return None
    if series is not None:
        raise InputError(f"{path}: --series applies to DICOM input only")
    if volume_index is not None:
        raise InputError(f"{path}: --volume-index applies to 4D NIfTI input only")
    module, func = _READERS[fmt]
    return getattr(importlib.import_module(module), func)(path)


def select_series(series: list, skipped: list, folder: Path, *, choice: str | None = None,
                  file: Path | None = None):
    """Pick one ``SeriesInfo``: ``choice`` (1-based index or UID / unique UID suffix), the series
    holding ``file``, or the largest series that reads as one volume.

    Returns:
        ``(info, how)`` where ``how`` says why it was chosen (kept in metadata and printed).
    """
    if not series:
        raise InputError(no_series_message(folder, skipped))
    if choice is not None:
        text = str(choice).strip().lstrip(".\u2026")
        if text.isdigit() and 1 <= int(text) <= len(series):
            return series[int(text) - 1], f"series {text} as requested"
        hits = [s for s in series if s.uid == text] or [s for s in series if s.uid.endswith(text)]
        if len(hits) == 1:
            return hits[0], f"series {hits[0].index} as requested ({choice})"
        what = "matches several series" if hits else "matches no series"
        raise InputError(f"{folder}: --series {choice} {what}; give an index 1..{len(series)} "
                         f"or a full SeriesInstanceUID (see: ldm-med info {folder})")
    if file is not None:
        target = file.resolve()
        for s in series:
            if any(p.resolve() == target for p in s.files):
                return s, f"series {s.index}, which holds {file.name}"
        reason = next((k.reason for k in skipped if k.path.resolve() == target), "not in a series")
        raise InputError(f"{file}: not part of a readable image series ({reason})")
    usable = [s for s in series if s.error is None]
    if not usable:
        raise InputError(f"{folder}: none of the {len(series)} image series reads as one volume "
                         f"(series {series[0].index}: {series[0].error})")
    best = max(usable, key=lambda s: (s.n_images, s.shape[2], -s.index))
    how = f"series {best.index}, the largest of {len(series)} image series"
    if len(usable) < len(series):
        how += f" ({len(series) - len(usable)} not readable as one volume)"
    return best, how


def no_series_message(folder: Path, skipped: list) -> str:
    """One line: no image series, and why the files were skipped (counts per kind of reason)."""
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s.reason.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    why = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{folder}: no DICOM image series found ({len(skipped)} files skipped: {why})"


def load_volume(path: str | Path, *, volume_index: int | None = None,
                series: str | None = None) -> Volume:
    """Read a NIfTI, MRC, FITS, TIFF or PNG file, a DICOM folder or one DICOM file's series as a ``Volume``.

    Args:
        path: ``.nii``/``.nii.gz``, ``.mrc``/``.map``/``.mrcs``, ``.fits``/``.fit``/``.fts``/``.fits.gz``,
            ``.tif``/``.tiff`` or ``.png`` file, DICOM folder (searched recursively) or a DICOM file.
        volume_index: which volume of a 4D NIfTI (required when it holds several).
        series: DICOM only: 1-based series index as listed by ``ldm-med info``, or a
            SeriesInstanceUID (or a unique suffix of one). Default: the largest image series.

    Raises:
        InputError: missing or unreadable path, no image series, 4D without ``volume_index``...
    """
    from ldm_med.io.dicom import read_series, scan_dicom_folder
    from ldm_med.io.formats import nifti_marks

    path = Path(path)
    _check_exists(path)
    science = _science_file(path, volume_index, series)
    if science is not None:
        return science
    target = _dicom_target(path)
    if target is None:
        if series is not None:
            raise InputError(f"{path}: --series applies to DICOM input only")
        if not has_suffix(path, NIBABEL_SUFFIXES):
            raise _unsupported(path)
        volume = load_nifti(path, volume_index=volume_index)
        volume.metadata.update(nifti_marks(path))  # synthetic / provenance, if ldm-med recorded them
        return volume
    if volume_index is not None:
        raise InputError(f"{path}: --volume-index applies to 4D NIfTI input only")
    folder, file = target
    found, skipped = scan_dicom_folder(folder)
    info, how = select_series(found, skipped, folder, choice=series, file=file)
    volume = read_series(info)
    volume.metadata["series_choice"] = how
    volume.metadata["n_series"] = len(found)
    volume.metadata["skipped"] = [(str(s.path), s.reason) for s in skipped] + \
        volume.metadata["skipped"]
    return volume


def describe(path: str | Path, *, series: str | None = None, volume_index: int | None = None,
             verbose: bool = False) -> str:
    """Human-readable report on a NIfTI, MRC, FITS, TIFF or PNG file or a DICOM folder (``ldm-med info``).

    DICOM: every series (index, UID, modality, description, files, shape, spacing, orientation,
    missing slices, warnings) and the skipped files grouped by reason; with ``series``, pixel
    statistics of that series too. NIfTI: shape, spacing, orientation, dtype, modality guess,
    intensity range, slices that look missing. Never prints patient identifiers.
    """
    from ldm_med.io import report

    path = Path(path)
    _check_exists(path)
    science = _science_file(path, volume_index, series)
    if science is not None:
        from ldm_med.io.formats import describe_file

        return describe_file(path, science)
    target = _dicom_target(path)
    if target is None:
        if not has_suffix(path, NIBABEL_SUFFIXES):
            raise _unsupported(path)
        from ldm_med.io.formats import nifti_marks, to_json

        text = report.describe_nifti(path, volume_index=volume_index)
        marks = nifti_marks(path)
        if marks.get("synthetic"):
            text += "\n  synthetic: YES, generated by ldm-med (not acquired data)"
        if "provenance" in marks:
            text += f"\n  provenance: {to_json(marks['provenance'])[:300]}"
        return text
    if volume_index is not None:
        raise InputError(f"{path}: --volume-index applies to 4D NIfTI input only")
    return report.describe_dicom(target[0], series=series, file=target[1], verbose=verbose)
