"""Interpolation of missing slices along one axis: the baselines, and the anchor the diffusion model
corrects.

Every method is linear in the acquired slices, so it is expressed as a weight matrix
``W (n_missing, n_known)`` computed once per mask (``interpolation_weights``) and applied with one matrix
product over all voxels. Outside the first/last acquired slice the nearest acquired slice is repeated
(splines extrapolate wildly). Acquired slices are always returned untouched.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ldm_med.errors import InputError
from ldm_med.options import INTERPOLATIONS

METHODS = INTERPOLATIONS
LANCZOS_LOBES = 3  # Lanczos-3, the windowed sinc 3D Slicer and ANTs users know


def interpolation_weights(known: np.ndarray, query: np.ndarray, method: str = "cubic") -> np.ndarray:
    """Weights that interpolate values at ``query`` positions from values at ``known`` positions.

    Args:
        known: ``(K,)`` increasing slice positions with data, ``K >= 1``.
        query: ``(M,)`` positions to fill.
        method: ``"linear"``; ``"cubic"`` (not-a-knot cubic spline through the known positions, as
            ``scipy.interpolate.CubicSpline``); ``"bspline"`` (cubic B-spline, as
            ``scipy.ndimage.map_coordinates`` with order 3) or ``"lanczos"`` (Lanczos-3 windowed sinc,
            normalised to sum 1). The last two resample the known slices as a regular grid: exact
            for regular gaps (``keep-every``), where ANTs and 3D Slicer users meet them; with
            irregular gaps a query's place between its neighbours is kept, the grid is warped.

    Returns:
        ``(M, K)`` float64 matrix ``W`` with ``values[query] = W @ values[known]``; rows sum to 1.
    """
    if method not in METHODS:
        raise InputError(f"unknown interpolation method {method!r}; valid: {', '.join(METHODS)}")
    known = np.asarray(known, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    eye = np.eye(len(known))
    clamped = np.clip(query, known[0], known[-1])  # nearest-slice extrapolation at both ends
    if len(known) == 1:
        return np.ones((len(query), 1))
    if method == "linear" or len(known) < 3:
        return np.stack([np.interp(clamped, known, eye[k]) for k in range(len(known))], axis=1)
    if method == "cubic":
        from scipy.interpolate import CubicSpline

        return CubicSpline(known, eye, axis=0, bc_type="not-a-knot")(clamped)
    grid = np.interp(clamped, known, np.arange(len(known), dtype=np.float64))  # known-index space
    return _bspline_weights(grid, len(known)) if method == "bspline" else _lanczos_weights(grid, len(known))


def _bspline_weights(grid: np.ndarray, k: int) -> np.ndarray:
    """``(M, K)`` weights of cubic B-spline interpolation at fractional indices ``grid``."""
    from scipy import ndimage

    rows = np.repeat(grid, k)
    cols = np.tile(np.arange(k, dtype=np.float64), len(grid))
    w = ndimage.map_coordinates(np.eye(k), [rows, cols], order=3, mode="nearest", prefilter=True)
    return w.reshape(len(grid), k)


def _lanczos_weights(grid: np.ndarray, k: int, lobes: int = LANCZOS_LOBES) -> np.ndarray:
    """``(M, K)`` Lanczos weights at fractional indices ``grid``; taps beyond the ends repeat the edge
    slice, and each row is normalised to sum 1."""
    weights = np.zeros((len(grid), k))
    base = np.floor(grid).astype(int)
    for tap in range(-lobes + 1, lobes + 1):
        idx = base + tap
        w = np.sinc(grid - idx) * np.sinc((grid - idx) / lobes)
        np.add.at(weights, (np.arange(len(grid)), np.clip(idx, 0, k - 1)), w)
    return weights / weights.sum(axis=1, keepdims=True)


def fill_missing(array: np.ndarray, missing: np.ndarray, axis: int = -1, method: str = "cubic") -> np.ndarray:
    """Fill the slices marked in ``missing`` along ``axis`` by interpolating the others.

    Args:
        array: any-dimensional array; values in missing slices are ignored.
        missing: ``(array.shape[axis],)`` bool, True = fill.
        axis: the slice axis.
        method: ``"linear"`` or ``"cubic"``.

    Returns:
        float32 copy of ``array`` with acquired slices identical to the input.
    """
    missing = np.asarray(missing, dtype=bool)
    out = np.array(array, dtype=np.float32, copy=True)
    if not missing.any():
        return out
    known, query = np.flatnonzero(~missing), np.flatnonzero(missing)
    if len(known) == 0:
        raise InputError("cannot interpolate: every slice is marked missing")
    weights = interpolation_weights(known, query, method).astype(np.float32)
    moved = np.moveaxis(out, axis, 0)  # view: (D, ...)
    flat_known = moved[known].reshape(len(known), -1)
    moved[query] = (weights @ flat_known).reshape((len(query),) + moved.shape[1:])
    return out


def fill_missing_batch(x: Tensor, missing: Tensor, method: str = "cubic") -> Tensor:
    """Torch version for batches of slabs, one mask per item.

    Args:
        x: ``(B, C, D, *spatial)``; slices along dim 2.
        missing: ``(B, D)`` bool.

    Returns:
        ``(B, C, D, *spatial)`` with missing slices interpolated and acquired slices copied exactly.
    """
    out = x.clone()
    for b in range(x.shape[0]):
        miss = missing[b].detach().cpu().numpy().astype(bool)
        if not miss.any():
            continue
        known, query = np.flatnonzero(~miss), np.flatnonzero(miss)
        if len(known) == 0:
            raise InputError("cannot interpolate: every slice of a slab is marked missing")
        weights = torch.as_tensor(interpolation_weights(known, query, method), dtype=x.dtype, device=x.device)
        src = x[b][:, torch.as_tensor(known, device=x.device)]  # (C, K, *spatial)
        out[b][:, torch.as_tensor(query, device=x.device)] = torch.einsum("mk,ck...->cm...", weights, src)
    return out
