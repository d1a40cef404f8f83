"""``Volume``: the one in-memory representation of a scan, and its geometry conventions.

Conventions (all conversions live here):

* ``data`` is float32 in voxel order ``(i, j, k)`` exactly as the source stores it (nibabel's order
  for NIfTI; for DICOM, ``i`` runs along a row (column index), ``j`` down the columns (row index), ``k``
  over slices in increasing position along the slice normal).
* ``affine`` maps voxel indices ``(i, j, k, 1)`` to world coordinates in **RAS+ millimetres**, as in
  NIfTI. DICOM's patient frame is LPS+; ``lps_to_ras`` flips the first two world axes.
* ``slice_axis`` is the voxel axis along which slices were acquired (2 for DICOM series).
* ``acquired`` is a bool vector over ``slice_axis``; False marks slices that are missing or corrupt.
  Values stored in not-acquired slices are never used by any algorithm.
* ``spacing`` (mm) is derived from the affine's column norms, never stored separately.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Convert a voxel->LPS affine (DICOM) to voxel->RAS (NIfTI). The same matrix converts back."""
    return LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64)


@dataclass
class Volume:
    """A 3D scan: voxels, geometry, which slices were acquired, and free-form metadata.

    Args:
        data: ``(X, Y, Z)`` voxel values, stored as float32.
        affine: ``(4, 4)`` voxel -> world RAS mm.
        slice_axis: voxel axis along which slices were acquired.
        acquired: ``(data.shape[slice_axis],)`` bool; defaults to all True.
        metadata: modality, source, series description, skipped files... Never patient identifiers
            in anything that is logged.
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    slice_axis: int = 2
    acquired: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3D, got shape {self.data.shape}")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if not 0 <= self.slice_axis <= 2:
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        n = self.data.shape[self.slice_axis]
        if self.acquired is None:
            self.acquired = np.ones(n, dtype=bool)
        self.acquired = np.asarray(self.acquired, dtype=bool)
        if self.acquired.shape != (n,):
            raise ValueError(f"acquired must have shape ({n},), got {self.acquired.shape}")

    # -- geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each voxel axis (norms of the affine's columns)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore

    def spacing_slices_first(self) -> tuple[float, float, float]:
        """``spacing`` in the axis order of ``slices_first()``: slice spacing first."""
        sp = self.spacing
        return (sp[self.slice_axis],) + tuple(s for i, s in enumerate(sp) if i != self.slice_axis)  # type: ignore

    @property
    def n_slices(self) -> int:
        return self.data.shape[self.slice_axis]

    @property
    def missing(self) -> np.ndarray:
        """Indices of slices that were not acquired."""
        return np.flatnonzero(~self.acquired)

    def world(self, ijk: np.ndarray) -> np.ndarray:
        """World RAS mm of voxel indices ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def orientation(self) -> str:
        """Axis codes such as ``'RAS'`` or ``'LPI'`` (nibabel's convention)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    # -- slices ---------------------------------------------------------------------------------
    def slices_first(self) -> np.ndarray:
        """``(Z, A, B)`` view with the slice axis moved first (no copy)."""
        return np.moveaxis(self.data, self.slice_axis, 0)

    def with_data(self, data: np.ndarray, **changes: Any) -> Volume:
        """A new Volume with the same geometry and new voxel values (metadata shallow-copied)."""
        changes.setdefault("metadata", dict(self.metadata))
        return replace(self, data=data, **changes)
