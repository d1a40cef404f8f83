"""Volumes <-> napari layers: the geometry convention of the plugin, in one place (numpy only).

A ``Volume`` stores voxels ``(i, j, k)`` and a voxel -> RAS affine. A layer stores the transposed view
``(k, j, i)``, and napari's world axes are DICOM's patient axes reversed, ``(S, P, L)`` (the convention
of ITK's napari bridge). For an axial scan this puts the slice axis on napari's slider and shows each
slice the radiological way (anterior at the top, the patient's right on the left), with a diagonal
transform: ``scale`` is the voxel spacing, ``translate`` the origin, and ``affine`` holds only the
direction cosines (the identity for an axial scan, so napari slices without resampling).

    world(S, P, L) = affine @ (translate + scale * (k, j, i))

Layer metadata keeps what the reconstruction needs: ``modality``, ``acquired`` / ``missing`` over the
layer's ``slice_axis``, and the original RAS affine (``affine_ras``) so a result can be written back as
NIfTI in the scan's own geometry.
"""
from __future__ import annotations

from typing import Any

import numpy as np

WORLD_AXES = ("S", "P", "L")  # napari's world axes for every scan the plugin opens
LAYER_KEY = "ldm_med"  # metadata["ldm_med"]: the plugin's own record (geometry, series, slice axis)
_REVERSE = np.eye(3)[::-1]  # (a, b, c) <-> (c, b, a)
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# metadata values that napari's layer metadata should not carry (big or opaque objects)
_DROP = {"dicom_reference", "sop_instance_uids", "source_frames"}


def layer_geometry(affine_ras: np.ndarray) -> dict[str, np.ndarray]:
    """napari ``scale``, ``translate``, ``affine`` for the transposed view of a volume.

    Args:
        affine_ras: ``(4, 4)`` voxel ``(i, j, k)`` -> RAS mm.
    """
    m = _REVERSE @ _RAS_TO_LPS @ np.asarray(affine_ras, float)[:3, :3] @ _REVERSE  # (k,j,i) -> (S,P,L)
    origin = _REVERSE @ _RAS_TO_LPS @ np.asarray(affine_ras, float)[:3, 3]
    scale = np.linalg.norm(m, axis=0)
    direction = m / scale  # orthonormal columns for any scanner geometry without shear
    direction[np.abs(direction) < 1e-9] = 0.0  # DICOM cosines printed to 6 digits: keep it diagonal
    affine = np.eye(4)
    affine[:3, :3] = direction
    return {"scale": scale, "translate": direction.T @ origin, "affine": affine}


def layer_from_volume(volume: Any, name: str, extra: dict | None = None) -> tuple:
    """A napari ``LayerDataTuple`` (data, kwargs, "image") showing ``volume`` (a ``ldm_med.Volume``).

    ``data`` is a view of ``volume.data`` (no copy); the slice axis becomes ``2 - volume.slice_axis``.
    """
    data = np.transpose(volume.data)
    slice_axis = 2 - volume.slice_axis
    metadata = {k: v for k, v in volume.metadata.items() if k not in _DROP}
    metadata.update({
        "acquired": volume.acquired.copy(),
        "missing": volume.missing.tolist(),
        "slice_axis": slice_axis,
        LAYER_KEY: {"affine_ras": volume.affine.copy(), "layer_order": "transposed (k, j, i)",
                    "world_axes": "S, P, L (DICOM patient axes reversed)", **(extra or {})},
    })
    kwargs = {"name": name, "metadata": metadata, "contrast_limits": display_window(volume),
              "colormap": "gray", "axis_labels": WORLD_AXES, **layer_geometry(volume.affine)}
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
    shear[leading:, leading:] = _shear_matrix(np.asarray(layer.shear), layer.ndim)
    return {"scale": np.r_[np.ones(leading), layer.scale],
            "translate": np.r_[np.zeros(leading), layer.translate],
            "rotate": rotate, "shear": shear, "affine": affine,
            "units": ("pixel",) * leading + tuple(layer.units),
            "axis_labels": ("sample",) * leading + tuple(layer.axis_labels)}


def _shear_matrix(shear: np.ndarray, ndim: int) -> np.ndarray:
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
