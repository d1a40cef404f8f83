"""Text reports for ``ldm-med info`` and ``ldm-med convert``. Never prints patient identifiers:
only series-level fields (modality, description, UID, geometry) and paths the user gave."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ldm_med.masks import detect_missing, format_indices
from ldm_med.volume import Volume, lps_to_ras

_LIST_LIMIT = 10  # skipped paths shown per reason unless verbose


def redact(text: str, identifiers) -> str:
    """Replace patient identifiers (e.g. a folder named after the PatientID) by ``<patient>``."""
    for ident in sorted(identifiers, key=len, reverse=True):
        text = re.sub(re.escape(ident), "<patient>", text, flags=re.IGNORECASE)
    return text


def short_uid(uid: str, keep: int = 18) -> str:
    return uid if len(uid) <= keep + 3 else "..." + uid[-keep:]


def _fmt_mm(values) -> str:
    return " x ".join(f"{v:.4g}" for v in values) + " mm"


def _axcodes(affine_ras: np.ndarray) -> str:
    import nibabel as nib

    return "".join(c or "?" for c in nib.aff2axcodes(affine_ras))


def missing_line(acquired: np.ndarray, axis_name: str = "k") -> str:
    missing = np.flatnonzero(~np.asarray(acquired, dtype=bool))
    if missing.size == 0:
        return "missing slices: none"
    return (f"missing slices: {missing.size} of {acquired.size} "
            f"({axis_name} = {format_indices(missing)}, 0-based)")


def _intensity_lines(volume: Volume) -> list[str]:
    data = volume.slices_first()[volume.acquired]
    finite = data[np.isfinite(data)]
    lines = []
    if finite.size:
        sample = finite[:: max(1, finite.size // 1_000_000)]
        p1, p99 = np.percentile(sample, [1, 99])
        lines.append(f"intensity range: {finite.min():.6g} .. {finite.max():.6g} "
                     f"(1st-99th percentile {p1:.6g} .. {p99:.6g})")
    else:
        lines.append("intensity range: no finite values")
    if finite.size < data.size:
        lines.append(f"non-finite voxels: {data.size - finite.size}")
    axis = "ijk"[volume.slice_axis]
    flagged = np.flatnonzero(detect_missing(volume) & volume.acquired)
    lines.append("slices that look missing (blank, constant or NaN): "
                 + ("none" if flagged.size == 0 else
                    f"{flagged.size} ({axis} = {format_indices(flagged)}, 0-based)"))
    return lines


def describe_nifti(path: Path, *, volume_index: int | None = None) -> str:
    from ldm_med.io.nifti import load_nifti, open_nifti

    img = open_nifti(path)  # InputError naming the file for anything nibabel cannot read
    shape = tuple(int(v) for v in img.shape)
    lines = [f"NIfTI file: {path}",
             f"  shape: {' x '.join(map(str, shape))}  (stored as {img.get_data_dtype()})"]
    if len(shape) >= 4 and shape[3] > 1 and volume_index is None:
        zooms = img.header.get_zooms()[:3]
        lines += [f"  spacing: {_fmt_mm(zooms)}",
                  f"  orientation: {_axcodes(img.affine)}",
                  f"  4D image with {shape[3]} volumes: pass --volume-index N (0..{shape[3] - 1}) "
                  "to describe one volume"]
        return "\n".join(lines)
    vol = load_nifti(path, volume_index=volume_index)
    hdr = img.header
    codes = (f"sform code {int(hdr['sform_code'])}, qform code {int(hdr['qform_code'])}"
             if "sform_code" in hdr else "")
    meta = vol.metadata
    lines += [f"  volume: {' x '.join(map(str, vol.shape))}"
              + (f" (volume index {meta['volume_index']})" if "volume_index" in meta else ""),
              f"  spacing: {_fmt_mm(vol.spacing)}",
              f"  orientation: {vol.orientation()}" + (f" ({codes})" if codes else ""),
              f"  modality: {meta['modality']}"
              + (" (guessed from intensities)" if meta.get("modality_guessed") else ""),
              f"  slice axis: {vol.slice_axis} ({'ijk'[vol.slice_axis]})",
              f"  {missing_line(vol.acquired, 'ijk'[vol.slice_axis])} (as recorded by ldm-med)"
              if meta.get("missing_recorded") else
              "  missing slices: not recorded in the file (plain NIfTI cannot say)"]
    lines += [f"  {line}" for line in _intensity_lines(vol)]
    return "\n".join(lines)


def _series_block(s, default_index: int | None) -> list[str]:
    tag = ""
    if default_index == s.index:
        tag = "  <- read by default (largest)"
    desc = f'"{s.description}"' if s.description else "(no description)"
    orient = _axcodes(lps_to_ras(s.affine_lps))
    iop = ", ".join(f"{v + 0.0:.4g}" for v in s.orientation)  # + 0.0: no "-0"
    files = f"{s.n_files} file{'s' if s.n_files != 1 else ''}"
    if s.n_images != s.n_files:
        files += f" ({s.n_images} images)"
    lines = [f"  [{s.index}] {s.modality or '?'}  {desc}  UID {short_uid(s.uid)}{tag}",
             f"      {files}; {' x '.join(map(str, s.shape))} voxels; "
             f"spacing {_fmt_mm(s.spacing)}; orientation {orient} (IOP {iop})"]
    if s.error:
        lines.append(f"      cannot be read as one volume: {s.error}")
    else:
        lines.append(f"      {missing_line(s.acquired)}")
    lines += [f"      warning: {redact(w, s.identifiers)}" for w in s.warnings if w != s.error]
    return lines


def skipped_lines(skipped: list, folder: Path, verbose: bool) -> list[str]:
    if not skipped:
        return ["Skipped files: none"]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for s in skipped:
        try:
            rel = str(Path(s.path).relative_to(folder))
        except ValueError:
            rel = str(s.path)
        by_reason[s.reason].append(redact(rel, s.identifiers))
    lines = [f"Skipped files ({len(skipped)}):"]
    for reason, paths in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"  {reason} ({len(paths)} file{'s' if len(paths) != 1 else ''}):")
        shown = paths if verbose else paths[:_LIST_LIMIT]
        lines += [f"    {p}" for p in shown]
        if len(shown) < len(paths):
            lines.append(f"    ... and {len(paths) - len(shown)} more (--verbose lists all)")
    return lines


def describe_dicom(folder: Path, *, series: str | None = None, file: Path | None = None,
                   verbose: bool = False) -> str:
    from ldm_med.errors import InputError
    from ldm_med.io import no_series_message, select_series
    from ldm_med.io.dicom import read_series, scan_dicom_folder

    found, skipped = scan_dicom_folder(folder)
    if not found:
        raise InputError(no_series_message(folder, skipped))
    n_files = len({p for s in found for p in s.files} | {s.path for s in skipped})
    try:
        default = select_series(found, skipped, folder)[0].index
    except InputError:
        default = None
    lines = [f"DICOM folder: {folder}",
             f"{n_files} files: {sum(s.n_images for s in found)} images in {len(found)} series, "
             f"{len(skipped)} skipped", "", "Series:"]
    for s in found:
        lines += _series_block(s, default)
    lines += [""] + skipped_lines(skipped, folder, verbose)
    if series is not None or file is not None:
        info, how = select_series(found, skipped, folder, choice=series, file=file)
        vol = read_series(info)
        lines += ["", f"Pixel data of {how}:",
                  f"  rescale: slope {vol.metadata['rescale']['slope']:g}, intercept "
                  f"{vol.metadata['rescale']['intercept']:g}"
                  + (" (varies per slice)" if vol.metadata["rescale"]["varies"] else "")
                  + (f", units {vol.metadata['rescale']['type']}"
                     if vol.metadata["rescale"]["type"] else ""),
                  f"  {missing_line(vol.acquired)}"]
        lines += [f"  {line}" for line in _intensity_lines(vol)]
        lines += [f"  warning: {redact(w, info.identifiers)}" for w in vol.metadata["warnings"]
                  if w not in info.warnings]
    return "\n".join(lines)
