"""Volumes <-> napari layers: the geometry convention of the plugin, in one place (numpy only).

A ``Volume`` stores voxels ``(i, j, k)`` and a voxel -> RAS affine. napari's world axes are DICOM's
patient axes reversed, ``(S, P, L)`` (the convention of ITK's napari bridge), and a layer holds a
transposed view of the voxels whose axes follow the world axes as closely as the scan allows
(``axis_order``): ``(k, j, i)`` for an axial scan, so the slider runs over the slices and each slice
shows the radiological way (anterior at the top, the patient's right on the left). The transform is
then as diagonal as the scan allows: ``scale`` is the voxel spacing, ``translate`` the origin, and
``affine`` holds only the direction cosines (a signed identity for scans aligned with the patient
axes, so napari slices them without resampling; oblique scans show napari's non-orthogonal warning).

    world(S, P, L) = affine @ (translate + scale * layer_index)

Layer metadata keeps what the reconstruction needs: ``modality``, ``acquired`` / ``missing`` over the
layer's ``slice_axis``, and the original RAS affine (``affine_ras``) and ``axis_order`` so a result
can be written back in the scan's own voxel order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

WORLD_AXES = ("S", "P", "L")  # napari's world axes for every scan the plugin opens
LAYER_KEY = "ldm_med"  # metadata["ldm_med"]: the plugin's own record (geometry, series, slice axis)
_WORLD = np.eye(3)[::-1] @ np.diag([-1.0, -1.0, 1.0])  # RAS (x, y, z) -> world (S, P, L)
# metadata values that napari's layer metadata should not carry (big or opaque objects)
_DROP = {"dicom_reference", "sop_instance_uids", "source_frames"}


def axis_order(affine_ras: np.ndarray) -> tuple[int, int, int]:
    """The voxel axis that runs closest to each world axis ``(S, P, L)``: ``(2, 1, 0)`` for an axial
    scan. The layer's data is ``np.transpose(volume.data, axis_order)``."""
    m = np.abs(_WORLD @ np.asarray(affine_ras, float)[:3, :3])  # voxel (i, j, k) -> world (S, P, L)
    m = m / np.linalg.norm(m, axis=0)
    order = [-1, -1, -1]
    for flat in np.argsort(-m, axis=None):  # greedy: the most aligned pairs first
        world, voxel = divmod(int(flat), 3)
        if order[world] < 0 and voxel not in order:
            order[world] = voxel
    return tuple(order)  # type: ignore[return-value]


def layer_geometry(affine_ras: np.ndarray, order: tuple[int, int, int] | None = None
                   ) -> dict[str, np.ndarray]:
    """napari ``scale``, ``translate``, ``affine`` for ``np.transpose(volume.data, order)``.

    Args:
        affine_ras: ``(4, 4)`` voxel ``(i, j, k)`` -> RAS mm.
        order: the layer's voxel axes (default ``axis_order(affine_ras)``).
    """
    affine_ras = np.asarray(affine_ras, float)
    order = axis_order(affine_ras) if order is None else order
    m = _WORLD @ affine_ras[:3, :3][:, list(order)]  # layer index -> (S, P, L)
    origin = _WORLD @ affine_ras[:3, 3]
    scale = np.linalg.norm(m, axis=0)
    direction = m / scale  # orthonormal columns for any scanner geometry without shear
    direction[np.abs(direction) < 1e-9] = 0.0  # DICOM cosines printed to 6 digits: keep it diagonal
    affine = np.eye(4)
    affine[:3, :3] = direction
    return {"scale": scale, "translate": direction.T @ origin, "affine": affine}


def layer_from_volume(volume: Any, name: str, extra: dict | None = None) -> tuple:
    """A napari ``LayerDataTuple`` (data, kwargs, "image") showing ``volume`` (a ``ldm_med.Volume``).

    ``data`` is a transposed view of ``volume.data`` (no copy), in ``axis_order``.
    """
    order = axis_order(volume.affine)
    data = np.transpose(volume.data, order)
    slice_axis = order.index(volume.slice_axis)
    metadata = {k: v for k, v in volume.metadata.items() if k not in _DROP}
    metadata.update({
        "acquired": volume.acquired.copy(),
        "missing": volume.missing.tolist(),
        "slice_axis": slice_axis,
        LAYER_KEY: {"affine_ras": volume.affine.copy(), "axis_order": order,
                    "world_axes": "S, P, L (DICOM patient axes reversed)", **(extra or {})},
    })
    kwargs = {"name": name, "metadata": metadata, "contrast_limits": display_window(volume),
              "colormap": "gray", "axis_labels": WORLD_AXES,
              **layer_geometry(volume.affine, order)}
    return data, kwargs, "image"


def display_window(volume: Any) -> tuple[float, float]:
    """Contrast limits: a soft-tissue window for CT in Hounsfield units (W 400, L 40), else the
    0.5-99.5 percentiles of the acquired slices."""
    if str(volume.metadata.get("modality", "")).upper() == "CT":
        return (-160.0, 240.0)
    acquired = np.moveaxis(volume.data, volume.slice_axis, 0)[volume.acquired]
    values = acquired[np.isfinite(acquired)]
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (lo, hi if hi > lo else lo + 1.0)


def transform_kwargs(layer: Any, leading: int = 0) -> dict[str, Any]:
    """The source layer's ``scale``, ``translate``, ``rotate``, ``shear``, ``affine``, ``units`` and
    ``axis_labels``, for a new layer; ``leading`` extra axes in front (a samples axis) get an
    identity transform and the label ``sample``."""
    if leading == 0:
        return {"scale": np.array(layer.scale), "translate": np.array(layer.translate),
                "rotate": np.array(layer.rotate), "shear": np.array(layer.shear),
                "affine": np.array(layer.affine.affine_matrix), "units": tuple(layer.units),
                "axis_labels": tuple(layer.axis_labels)}
    n = layer.ndim + leading
    rotate, affine = np.eye(n), np.eye(n + 1)
    rotate[leading:, leading:] = layer.rotate
    affine[leading:, leading:] = layer.affine.affine_matrix
    shear = np.eye(n)
    shear[leading:, leading:] = shear_matrix(np.asarray(layer.shear), layer.ndim)
    return {"scale": np.r_[np.ones(leading), layer.scale],
            "translate": np.r_[np.zeros(leading), layer.translate],
            "rotate": rotate, "shear": shear, "affine": affine,
            "units": ("pixel",) * leading + tuple(layer.units),
            "axis_labels": ("sample",) * leading + tuple(layer.axis_labels)}


def shear_matrix(shear: np.ndarray, ndim: int) -> np.ndarray:
    """napari stores shear as an upper-triangular matrix or its off-diagonal coefficients."""
    if shear.ndim == 2:
        return shear
    out = np.eye(ndim)
    out[np.triu_indices(ndim, 1)] = shear
    return out


def slice_mask_labels(shape: tuple[int, ...], axis: int, missing: np.ndarray) -> np.ndarray:
    """``uint8`` labels of ``shape``: 1 on every voxel of the slices marked in ``missing``."""
    labels = np.zeros(shape, dtype=np.uint8)
    np.moveaxis(labels, axis, 0)[np.asarray(missing, bool)] = 1
    return labels


def slices_in_labels(labels: np.ndarray, axis: int) -> np.ndarray:
    """Bool over ``axis``: the slices of a labels array that hold any label (painted = missing)."""
    other = tuple(a for a in range(labels.ndim) if a != axis)
    return np.asarray(labels).any(axis=other)


def format_slices(indices: np.ndarray | list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    indices = sorted(int(i) for i in indices)
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
