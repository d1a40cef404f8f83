"""Discovery and per-series decisions: what a batch run will do with every file and series.

Discovery is ``ldm_med.io.dicom_series.scan_dicom_folder`` (headers only; its grouping, localizer and
skip rules). Each series then gets a decision before any pixel is read:

* ``refused``: cannot be reconstructed safely (fewer than ``MIN_SLICES`` images, non-uniform
  spacing, gantry tilt, 4D data, mixed orientation within one SeriesInstanceUID, a gap longer than
  ``max_gap`` slices), with the reason; the series is left alone;
* ``todo``: reconstructed. With ``--missing auto`` a series without geometry gaps may still hold
  blank or corrupt slices, found when its pixels are read; if it holds none it ends ``complete``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldm_med.batch.naming import safe_name, series_key
from ldm_med.io.report import redact

MIN_SLICES = 3
DEFAULT_MAX_GAP = 16  # consecutive missing slices; longer gaps are not filled

# (reason code, words that identify it in the io layer's messages)
_ERROR_CODES = (("4d", "repeated acquisitions"), ("non_uniform_spacing", "non-uniform"),
                ("unknown_order", "slice order is unknown"))


@dataclass
class SeriesPlan:
    """One series and what the run does with it. ``info`` is the io layer's ``SeriesInfo``."""

    key: str
    index: int
    info: object
    decision: str  # "todo" | "refused"
    reason_code: str = ""
    reason: str = ""
    folder: str = ""  # output folder, relative to OUT_DIR

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.info.shape))

    def public(self, root: Path, anonymize: bool) -> dict:
        """Report fields known before reading pixels (no patient identifiers)."""
        info = self.info
        ids = info.identifiers
        out = {
            "key": self.key, "index": self.index, "modality": safe_name(info.modality, 16, ""),
            "description": "" if anonymize else redact(info.description, ids)[:64],
            "n_files": info.n_files, "n_images": info.n_images,
            "shape": list(info.shape), "spacing_mm": [round(float(v), 6) for v in info.spacing],
            "geometry_missing": [int(k) for k in info.missing] if info.error is None else [],
            "folder": self.folder, "first_file": _rel(info.files[0], root, ids),
            "warnings": [redact(w, ids) for w in info.warnings],
        }
        if not anonymize:
            out["source_series_uid"] = info.uid
        return out


@dataclass
class SkippedRecord:
    path: str  # relative to IN_DIR, redacted
    reason: str
    reason_code: str


@dataclass
class Plan:
    series: list[SeriesPlan]
    skipped: list[SkippedRecord]
    n_files: int
    identifiers: frozenset = field(default=frozenset(), repr=False)

    def counts(self) -> dict[str, int]:
        return dict(Counter(s.reason_code for s in self.skipped))


def _rel(path: Path, root: Path, ids) -> str:
    try:
        text = str(Path(path).relative_to(root))
    except ValueError:
        text = Path(path).name
    return redact(text, ids)


_SKIP_CODES = (("not a dicom", "not_dicom"), ("dicomdir", "dicomdir"),
               ("no pixel data", "no_pixel_data"), ("truncated", "truncated"),
               ("no decoder", "compressed_no_decoder"), ("cannot decode", "undecodable"),
               ("localizer", "localizer"), ("duplicate slice position", "duplicate_position"),
               ("duplicate file", "duplicate_file"), ("colour image", "colour"),
               ("projection image", "projection"), ("unreadable", "unreadable"))


def reason_code(reason: str) -> str:
    """A short code for a skip reason (summary counts): a known kind, else the reason's head."""
    text = reason.lower()
    for prefix, code in _SKIP_CODES:
        if text.startswith(prefix):
            return code
    head = text.split(":")[0].split("(")[0].strip()
    return safe_name(head.replace(" ", "_"), 32, "other")


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for v in mask:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def decide(info, uid_orientations: int, max_gap: int) -> tuple[str, str, str]:
    """``(decision, reason_code, reason)`` for one ``SeriesInfo`` from its geometry alone."""
    if info.error:
        code = next((c for c, words in _ERROR_CODES if words in info.error), "geometry")
        return "refused", code, info.error
    if uid_orientations > 1:
        return ("refused", "mixed_orientation", f"mixed orientation: its SeriesInstanceUID holds "
                f"images in {uid_orientations} orientations that are not localizers")
    if info.n_images < MIN_SLICES:
        return ("refused", "too_few_slices", f"{info.n_images} image(s): at least {MIN_SLICES} "
                "are needed to reconstruct safely")
    tilt = next((w for w in info.warnings if "gantry tilt" in w), None)
    if tilt:
        return "refused", "gantry_tilt", tilt
    gap = _longest_run(~info.acquired)
    if gap > max_gap:
        return ("refused", "gap_too_large", f"a gap of {gap} consecutive missing slices "
                f"(more than --max-gap {max_gap}): too far from acquired data to fill")
    return "todo", "", ""


def discover(in_dir: Path, max_gap: int = DEFAULT_MAX_GAP) -> Plan:
    """Scan ``in_dir`` (headers only) and decide per series. Raises ``InputError`` for bad input."""
    from ldm_med.io.dicom_series import scan_dicom_folder

    found, skipped = scan_dicom_folder(in_dir)
    orientations: dict[str, set] = {}
    for s in found:
        orientations.setdefault(s.uid, set()).add(tuple(round(v, 3) for v in s.orientation))
    plans, keys = [], set()
    for s in found:
        key = series_key(s)
        while key in keys:  # same UID and members twice cannot happen; stay safe anyway
            key = key[:-1] + "0"
        keys.add(key)
        decision, code, reason = decide(s, len(orientations[s.uid]), max_gap)
        folder = f"series/{safe_name(s.modality, 8, 'OT')}_{key}"
        plans.append(SeriesPlan(key, s.index, s, decision, code, redact(reason, s.identifiers),
                                folder))
    records = [SkippedRecord(_rel(k.path, in_dir, k.identifiers), redact(k.reason, k.identifiers),
                             reason_code(k.reason)) for k in skipped]
    n_files = len({p for s in found for p in s.files} | {k.path for k in skipped})
    ids = next((s.identifiers for s in found), None) or \
        next((k.identifiers for k in skipped), frozenset())
    return Plan(plans, records, n_files, ids)
