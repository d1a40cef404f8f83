"""Slice geometry of a DICOM series: order, spacing, gaps, duplicates, tilt, and the affine.

Pure numpy, no pydicom: every function takes positions and orientations as arrays, so the rules
can be tested without writing files. World coordinates here are DICOM's patient frame (LPS mm).

Rules (see ``fit_slice_grid``):

* slices are ordered by ``s = IPP . (row_cos x col_cos)``, never by SliceLocation or file name;
* the slice spacing is SpacingBetweenSlices when every step is a multiple of it, else the median
  step, else the smallest step (when the median is itself a gap);
* a step that is an integer multiple ``m`` (within ``GRID_TOL`` of the spacing) leaves ``m - 1``
  missing positions; a step below ``DUPLICATE_TOL`` of the spacing is a duplicate position;
  any other step makes the spacing non-uniform, which is an error, never a silent guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GRID_TOL = 0.10  # a step within 10% of m * spacing is m slots
SNAP_WARN = 0.01  # positions off the uniform grid by more than 1% of the spacing are reported
DUPLICATE_TOL = 0.10  # steps below 10% of the spacing are duplicate positions
TILT_WARN_DEG = 0.5  # slice step this far from the slice normal: gantry tilt
ORTHOGONAL_COS = 0.1  # |n1 . n2| below this: planes are orthogonal (localizer test)
MOSTLY_MISSING = 0.5  # warn when more than half of the grid is missing
MAX_SLOTS = 100_000  # a grid of more slice positions than this comes from corrupt positions


def slice_normal(iop: np.ndarray) -> np.ndarray:
    """Unit normal ``row_cos x col_cos`` of an ImageOrientationPatient ``(6,)``."""
    iop = np.asarray(iop, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError(f"degenerate ImageOrientationPatient {iop.tolist()}")
    return n / norm


def same_orientation(a: np.ndarray, b: np.ndarray, atol: float = 1e-3) -> bool:
    """True when two ImageOrientationPatient vectors describe the same plane axes."""
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=atol))


def orthogonal(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the image planes of two orientations are (nearly) perpendicular."""
    return abs(float(slice_normal(a) @ slice_normal(b))) < ORTHOGONAL_COS


def affine_lps(iop: np.ndarray, pixel_spacing: tuple[float, float], origin: np.ndarray,
               step: np.ndarray) -> np.ndarray:
    """Voxel ``(i, j, k)`` -> LPS mm, with ``i`` along a row (column index) and ``j`` down a column.

    Args:
        iop: ImageOrientationPatient ``(6,)``: row direction cosines then column direction cosines.
        pixel_spacing: DICOM PixelSpacing ``(row spacing, column spacing)``, i.e. ``(dy, dx)``.
        origin: ImagePositionPatient of voxel ``(0, 0, 0)``.
        step: LPS vector from one slice position to the next (``normal * dz`` unless tilted).
    """
    iop = np.asarray(iop, dtype=np.float64)
    dy, dx = float(pixel_spacing[0]), float(pixel_spacing[1])
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * dx
    aff[:3, 1] = iop[3:] * dy
    aff[:3, 2] = np.asarray(step, dtype=np.float64)
    aff[:3, 3] = np.asarray(origin, dtype=np.float64)
    return aff


@dataclass
class SliceGrid:
    """How a set of slice positions maps onto a uniform grid.

    Attributes:
        slot: ``(N,)`` grid index of every input slice, or -1 for a dropped duplicate.
        n_slots: number of positions on the grid (acquired + missing).
        spacing: slice spacing in mm.
        origin: LPS position of slot 0.
        step: LPS vector between consecutive slots.
        duplicates: ``(dropped, kept)`` input indices of duplicate positions.
        warnings: human-readable remarks (tilt, snapping, InstanceNumber disagreement...).
        error: why the positions do not form one uniform volume (None when they do).
    """

    slot: np.ndarray
    n_slots: int
    spacing: float
    origin: np.ndarray
    step: np.ndarray
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def acquired(self) -> np.ndarray:
        mask = np.zeros(self.n_slots, dtype=bool)
        mask[self.slot[self.slot >= 0]] = True
        return mask


def _spacing_candidates(steps: np.ndarray, spacing_between: float | None) -> list[float]:
    cands = []
    if spacing_between and spacing_between > 0:
        cands.append(float(spacing_between))
    cands += [float(np.median(steps)), float(steps.min())]
    return cands


def _multiples(steps: np.ndarray, dz: float) -> np.ndarray | None:
    """Integer multiple of ``dz`` for each step, or None if some step is not one."""
    with np.errstate(all="ignore"):
        m = np.rint(steps / dz)
        ok = np.all(m >= 1) and np.all(np.abs(steps - m * dz) <= GRID_TOL * dz)
    if ok and float(m.sum()) < MAX_SLOTS:  # more slots than that: corrupt positions (checked by the caller)
        return m.astype(np.int64)
    return None


def _fmt(values: np.ndarray) -> str:
    uniq = sorted({round(float(v), 3) for v in values})
    shown = ", ".join(f"{v:g}" for v in uniq[:6])
    return shown + (", ..." if len(uniq) > 6 else "")


def fit_slice_grid(positions: np.ndarray, iop: np.ndarray, *,
                   spacing_between: float | None = None,
                   fallback_spacing: float = 1.0,
                   instance_numbers: list[int | None] | None = None) -> SliceGrid:
    """Place slices on a uniform grid along the slice normal.

    Args:
        positions: ``(N, 3)`` ImagePositionPatient of each slice (LPS mm). Among duplicate
            positions the slice that comes first in this array is kept.
        iop: ImageOrientationPatient shared by the slices.
        spacing_between: SpacingBetweenSlices from the headers, used when consistent.
        fallback_spacing: spacing for a single slice (SliceThickness or 1 mm).
        instance_numbers: InstanceNumber per slice, cross-checked against the position order.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n_in = len(pos)
    normal = slice_normal(iop)
    s = pos @ normal
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]

    # Cluster (near-)equal positions: their first member in input order is kept.
    steps_all = np.diff(s_sorted)
    nonzero = steps_all[steps_all > 1e-3]
    scale = float(np.median(nonzero)) if nonzero.size else 0.0
    dup_tol = max(1e-3, DUPLICATE_TOL * scale)
    clusters: list[list[int]] = [[int(order[0])]]
    for idx, step in zip(order[1:], steps_all):
        if step < dup_tol:
            clusters[-1].append(int(idx))
        else:
            clusters.append([int(idx)])
    kept = [min(c) for c in clusters]
    duplicates = [(i, min(c)) for c in clusters for i in c if i != min(c)]

    grid = SliceGrid(slot=np.full(n_in, -1), n_slots=1, spacing=float(fallback_spacing),
                     origin=pos[kept[0]], step=normal * fallback_spacing, duplicates=duplicates)
    if duplicates:
        if n_in >= 2 * len(kept):
            grid.error = (f"{n_in} images at only {len(kept)} slice position(s): repeated "
                          "acquisitions (4D, multi-echo or diffusion data?) that no DICOM tag here "
                          "separates; this is not a single volume")
        else:
            grid.warnings.append(f"{len(duplicates)} duplicate slice position(s): kept the first "
                                 "file at each position (lowest InstanceNumber)")
    if len(kept) == 1:
        grid.slot[kept[0]] = 0
        return grid

    u = s[kept]  # increasing, one per position
    steps = np.diff(u)
    mult, dz = None, float("nan")
    cands = _spacing_candidates(steps, spacing_between)
    for n_cand, dz in enumerate(cands):
        mult = _multiples(steps, dz)
        # SpacingBetweenSlices that would make most steps gaps is not the slice spacing.
        if mult is not None and (n_cand == len(cands) - 1 or np.median(mult) == 1):
            break
        mult = None
    if mult is None and np.all(np.isfinite(steps)) and any(
            np.isfinite(c) and c > 0 and float(np.rint(steps / c).sum()) >= MAX_SLOTS for c in cands):
        grid.error = (f"implausible slice positions: {len(kept)} images spread over more than "
                      f"{MAX_SLOTS} slice positions (steps of {_fmt(steps)} mm)")
        grid.warnings.append(grid.error)
        return grid
    if mult is None:
        grid.error = (f"non-uniform slice spacing: steps of {_fmt(steps)} mm between slice "
                      f"positions are not multiples of one spacing (median {np.median(steps):.4g} "
                      "mm); refusing to guess a uniform grid")
        grid.warnings.append(grid.error)
        return grid
    if spacing_between and spacing_between > 0 and dz != cands[0]:
        grid.warnings.append(f"SpacingBetweenSlices {spacing_between:g} mm disagrees with the "
                             f"slice positions; using {dz:.4g} mm from the positions")
    slots = np.concatenate([[0], np.cumsum(mult)])
    grid.slot[kept] = slots
    grid.n_slots = int(slots[-1]) + 1

    # Least-squares line through the kept positions: origin + slot * step.
    design = np.stack([np.ones(len(slots)), slots], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, pos[kept], rcond=None)
    grid.origin, grid.step = coef[0], coef[1]
    grid.spacing = float(abs(grid.step @ normal))
    resid_s = np.abs(u - (u[0] + slots * (u[-1] - u[0]) / slots[-1]))
    if resid_s.max() > GRID_TOL * grid.spacing:
        grid.error = (f"non-uniform slice spacing: positions deviate up to {resid_s.max():.3g} mm "
                      f"from a uniform {grid.spacing:.4g} mm grid; refusing to guess")
        grid.warnings.append(grid.error)
        return grid
    if resid_s.max() > max(SNAP_WARN * grid.spacing, 1e-3):
        grid.warnings.append(f"slice positions deviate up to {resid_s.max():.3g} mm from a uniform "
                             f"{grid.spacing:.4g} mm grid (snapped to it)")
    resid_3d = np.linalg.norm(pos[kept] - (design @ coef), axis=1).max()
    if resid_3d > max(SNAP_WARN * grid.spacing, 1e-2):
        grid.warnings.append(f"slice positions are not on a straight line (up to {resid_3d:.3g} mm "
                             "off); the affine uses the best-fitting line")

    cos = abs(float(grid.step @ normal)) / float(np.linalg.norm(grid.step))
    tilt = float(np.degrees(np.arccos(min(1.0, cos))))
    if tilt > TILT_WARN_DEG:
        grid.warnings.append(f"gantry tilt: the slice step is {tilt:.1f} deg off the slice normal; "
                             "the affine is sheared so every voxel keeps its scanner position")
    missing = grid.n_slots - len(kept)
    if missing and missing > MOSTLY_MISSING * grid.n_slots:
        grid.warnings.append(f"most of the grid is missing: {missing} of {grid.n_slots} slice "
                             "positions have no image")
    if instance_numbers is not None:
        inst = [instance_numbers[i] for i in kept]
        if all(v is not None for v in inst) and len(set(inst)) == len(inst):
            d = np.sign(np.diff(np.asarray(inst, dtype=np.float64)))
            if not (np.all(d > 0) or np.all(d < 0)):
                grid.warnings.append("InstanceNumber order disagrees with the slice positions; "
                                     "slices are ordered by position")
    return grid
