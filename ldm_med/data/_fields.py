"""Shared building blocks of the procedural generators: grids, smooth random fields, shape painting.

Everything is vectorised numpy and works on sub-blocks (bounding boxes) wherever a shape is small,
so that a 128x128x64 phantom is built in a few hundred milliseconds on two CPU cores.

Coordinates: phantoms are laid out in *normalised* world coordinates, ``world_mm / grid.scale``, where
``scale`` is half the smaller in-plane field of view. The same anatomy therefore fills the in-plane
field of view whatever the pixel size, and the number of slices times their spacing decides how much
of it is covered along the slice axis (isotropic units: a sphere stays a sphere).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.fft as sfft


def centered_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Voxel -> RAS mm affine of a scanner-style volume centred on the world origin.

    Voxel axes are aligned with DICOM's LPS patient axes (i towards patient left, j towards posterior,
    k towards superior), which is what a DICOM series converted to NIfTI looks like.
    """
    aff = np.diag([-float(spacing[0]), -float(spacing[1]), float(spacing[2]), 1.0])
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape[:3], dtype=np.float64) - 1.0) / 2.0)
    return aff


@dataclass(frozen=True)
class Grid:
    """Normalised world coordinates of a centred, axis-aligned voxel grid (see module docstring)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @cached_property
    def affine(self) -> np.ndarray:
        return centered_affine(self.shape, self.spacing)

    @cached_property
    def scale(self) -> float:
        """Millimetres per normalised unit: half the smaller in-plane field of view."""
        return min(self.shape[0] * self.spacing[0], self.shape[1] * self.spacing[1]) / 2.0

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable normalised RAS coordinates ``x (X,1,1)``, ``y (1,Y,1)``, ``z (1,1,Z)``."""
        aff = self.affine
        out = []
        for ax in range(3):
            v = (np.arange(self.shape[ax]) * aff[ax, ax] + aff[ax, 3]) / self.scale
            shp = [1, 1, 1]
            shp[ax] = -1
            out.append(v.astype(np.float32).reshape(shp))
        return out[0], out[1], out[2]

    def index_box(self, lo: Sequence[float], hi: Sequence[float], pad: float = 0.0) -> tuple[slice, ...]:
        """Voxel slices covering the normalised world box ``[lo, hi]`` grown by ``pad`` (may be empty)."""
        aff = self.affine
        sl = []
        for ax in range(3):
            a, b = float(lo[ax]) - pad, float(hi[ax]) + pad
            i0 = (a * self.scale - aff[ax, 3]) / aff[ax, ax]
            i1 = (b * self.scale - aff[ax, 3]) / aff[ax, ax]
            n = self.shape[ax]
            start = min(max(int(np.floor(min(i0, i1))), 0), n)
            stop = min(max(int(np.ceil(max(i0, i1))) + 1, 0), n)
            sl.append(slice(start, max(start, stop)))
        return tuple(sl)


def smooth_field(shape: Sequence[int], rng: np.random.Generator, n_ctrl: Sequence[int]) -> np.ndarray:
    """Smooth zero-mean, unit-std random field: Gaussian control values blended by Gaussian kernels.

    ``n_ctrl[ax]`` control points per axis set the number of undulations (about ``n_ctrl / 2``).
    Built as a separable tensor product, so it costs a few matrix products, not a 3D convolution.
    """
    n_ctrl = tuple(int(c) for c in n_ctrl)
    field = rng.standard_normal(n_ctrl).astype(np.float32)
    bases = []
    for n, c in zip(shape, n_ctrl):
        if c == 1:
            bases.append(np.ones((n, 1), dtype=np.float32))
            continue
        centres = np.linspace(0.0, n - 1.0, c)
        width = (n - 1.0) / (c - 1.0)
        x = np.arange(n, dtype=np.float64)
        bases.append(np.exp(-0.5 * ((x[:, None] - centres[None, :]) / width) ** 2).astype(np.float32))
    if len(shape) == 2:
        field = bases[0] @ field @ bases[1].T
    else:
        field = field @ bases[2].T  # (cx, cy, nz)
        field = bases[1] @ field  # (cx, ny, nz)
        field = (bases[0] @ field.reshape(n_ctrl[0], -1)).reshape(tuple(shape))
    sample = field.reshape(-1)[::7]  # mean and std from a subsample: plenty for a smooth field
    field -= np.float32(sample.mean())
    std = float(sample.std())
    if std > 0:
        field *= np.float32(1.0 / std)
    return field


def spectral_noise(
    shape: Sequence[int], rng: np.random.Generator, power: float, k_min: float = 1.0
) -> np.ndarray:
    """Zero-mean, unit-std noise with an isotropic power-law spectrum ``P(k) ~ k**-power``.

    ``power`` 2-4 gives cloud-like fractal structure (nebulae); frequencies below ``k_min`` cycles
    per field of view are suppressed. Works for 2D and 3D shapes.
    """
    shape = tuple(int(s) for s in shape)
    white = rng.standard_normal(shape).astype(np.float32)
    spec = sfft.rfftn(white)
    k2 = np.zeros(spec.shape, dtype=np.float32)
    for ax, n in enumerate(shape):
        f = sfft.rfftfreq(n) if ax == len(shape) - 1 else sfft.fftfreq(n)
        f = (f * max(shape)).astype(np.float32) ** 2  # cycles per largest field of view
        shp = [1] * len(shape)
        shp[ax] = -1
        k2 = k2 + f.reshape(shp)
    k = np.sqrt(k2)
    amp = np.where(k >= k_min, np.maximum(k, 1e-6) ** (-power / 2.0), 0.0).astype(np.float32)
    out = sfft.irfftn(spec * amp, s=shape).astype(np.float32)
    out -= out.mean()
    std = out.std()
    return out / std if std > 0 else out


def plane_wave_field(
    points: Sequence[np.ndarray], rng: np.random.Generator, wavelength: float, n_waves: int = 48
) -> np.ndarray:
    """Narrow-band random field: a sum of plane waves with random directions and phases.

    Its level sets form maze-like patterns (a good stand-in for cortical folding). ``points`` are
    coordinate arrays of any broadcastable shape; the result has unit variance.
    """
    dirs = rng.standard_normal((n_waves, len(points)))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = 2.0 * np.pi / wavelength * (1.0 + 0.15 * rng.standard_normal(n_waves))
    phases = rng.uniform(0.0, 2.0 * np.pi, n_waves)
    out = np.zeros(np.broadcast_shapes(*(np.shape(p) for p in points)), dtype=np.float32)
    for m in range(n_waves):
        arg = phases[m] + sum(float(k[m] * dirs[m, a]) * points[a] for a in range(len(points)))
        out += np.cos(arg)
    return out * np.float32(np.sqrt(2.0 / n_waves))


# -- painting shapes ------------------------------------------------------------------------------
def ellipsoid_level(
    coords: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float],
    angle: float = 0.0,
) -> np.ndarray:
    """``sum(((p - c) / r)**2)`` with the x-y plane rotated by ``angle`` (radians): < 1 is inside."""
    dx, dy, dz = (coords[a] - np.float32(centre[a]) for a in range(3))
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dz / radii[2]) ** 2


def ellipsoid_mask(
    grid: Grid, coords: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float],
    pad: float, angle: float = 0.0, level: float = 1.0,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """``(box, inside)``: the voxel box around an ellipsoid and the mask of its inside within that box.

    Use as ``img[box][inside] = value``. ``level`` > 1 grows the ellipsoid by ``sqrt(level)``.
    """
    grow = float(np.sqrt(level))
    rxy = max(radii[0], radii[1]) if angle else None
    half = np.array([rxy or radii[0], rxy or radii[1], radii[2]]) * grow
    box = grid.index_box(np.asarray(centre) - half, np.asarray(centre) + half, pad)
    sub = _broadcast_box(coords, box)
    return box, ellipsoid_level(sub, centre, radii, angle) < level


def segment_distance(
    coords: Sequence[np.ndarray], p0: np.ndarray, p1: np.ndarray
) -> np.ndarray:
    """Euclidean distance from each point to the segment ``p0 -> p1``."""
    d = np.asarray(p1, dtype=np.float64) - np.asarray(p0, dtype=np.float64)
    l2 = float(d @ d) or 1e-12
    rel = [coords[a] - np.float32(p0[a]) for a in range(3)]
    t = np.clip(sum(rel[a] * np.float32(d[a] / l2) for a in range(3)), 0.0, 1.0)
    return np.sqrt(sum((rel[a] - t * np.float32(d[a])) ** 2 for a in range(3)))


def paint_segments(
    img: np.ndarray, grid: Grid, coords: Sequence[np.ndarray], segments: Sequence[tuple],
    value: float | np.ndarray, pad: float, where: np.ndarray | None = None, shrink: float = 0.0,
    soft: float = 0.0,
) -> None:
    """Paint capsules ``(p0, p1, radius)`` into ``img`` in place, each inside its bounding box.

    ``value`` is a scalar or an array like ``img`` to copy from; ``where`` optionally restricts painting;
    ``shrink`` is subtracted from every radius (walls: paint outer capsules, then shrunken inner ones).
    ``pad`` is the largest coordinate displacement of the (deformed) ``coords`` from the grid.
    ``soft`` > 0 blends over an edge of that width and fades capsules thinner than it (partial
    volume), so thin vessels show up faintly instead of aliasing in or out of a slice.
    """
    for p0, p1, radius in segments:
        r = radius - shrink
        if r <= 0:
            continue
        lo = np.minimum(p0, p1) - r - soft
        hi = np.maximum(p0, p1) + r + soft
        box = grid.index_box(lo, hi, pad)
        if any(s.stop <= s.start for s in box):
            continue
        dist = segment_distance(_broadcast_box(coords, box), p0, p1)
        target = img[box]
        val = value[box] if isinstance(value, np.ndarray) else value
        if soft > 0:
            w = np.clip(0.5 + (r - dist) / soft, 0.0, 1.0) * min(1.0, 2.0 * r / soft)
            if where is not None:
                w *= where[box]
            target += w * (val - target)
            continue
        inside = dist < r
        if where is not None:
            inside &= where[box]
        target[inside] = val[inside] if isinstance(val, np.ndarray) else val


def _broadcast_box(coords: Sequence[np.ndarray], box: tuple[slice, ...]) -> list[np.ndarray]:
    """Cut ``box`` out of coordinate arrays that may be full 3D or broadcastable 1D views."""
    out = []
    for c in coords:
        sl = tuple(b if c.shape[a] > 1 else slice(None) for a, b in enumerate(box))
        out.append(np.broadcast_to(c[sl], tuple(b.stop - b.start for b in box)))
    return out
