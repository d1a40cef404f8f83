"""The check's second view: in-plane rows made to look like the scan's through-plane direction, with
the scan's own gap pattern.

Hiding acquired slices (``blend.py``) can only make gaps wider than the real ones (x4 becomes x8).
Where a scan is much smoother through-plane than in-plane (spectral cubes, density maps), the ranking
of the candidates at doubled gaps is not their ranking at the real gaps. The in-plane directions hold
the truth at every pixel, so rows of the acquired slices, brought to the through-plane structure, with
the real gap pattern, give a check at the real gap geometry.

Matching, per in-plane orientation: the through-plane structure function ``D_t = mean (x[z+d] - x[z])^2``
over acquired slices ``d`` apart (``d`` the smallest acquired spacing) against the same along the rows
at a lag of ``d`` pixels.

* Rows rougher than the slices are blurred along the row until they match; white noise (estimated
  from in-plane second differences) is put back to the level the blur removed, because through-plane
  the noise is as white as in-plane.
* Rows smoother than the slices (thick slices) are resampled to a coarser pixel, anti-aliased.

``bench/`` measured it on the reconstruction benchmark (docs/method.md, "A second view").
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.inpainting.refine import cyclic_pattern, refine_planes

SLICES = 8  # acquired slices whose rows the view uses (evenly spaced)
DRAWS = 2  # windows of the gap pattern per slice stack
TOLERANCE = 0.05  # structure functions within 5% need no matching
MIN_ROW = 8  # shorter matched rows (a coarse resampling of a small image) are not used


def structure(rows: np.ndarray, lag: int) -> float:
    """Mean squared difference along the last axis at ``lag``."""
    return float(np.square(rows[..., lag:] - rows[..., :-lag]).mean()) if rows.shape[-1] > lag else 0.0


def through_structure(x: np.ndarray, missing: np.ndarray) -> tuple[int, float] | None:
    """``(d, D_t)``: the smallest spacing of acquired slices and their structure function there; None
    with fewer than two acquired slices."""
    acquired = np.flatnonzero(~np.asarray(missing, dtype=bool))
    if len(acquired) < 2:
        return None
    steps = np.diff(acquired)
    lag = int(steps.min())
    pairs = acquired[:-1][steps == lag]
    return lag, float(np.mean([np.square(x[z + lag] - x[z]).mean() for z in pairs]))


def noise_sigma(stack: np.ndarray) -> float:
    """Standard deviation of white noise in ``(K, H, W)`` slices: the median absolute deviation of
    second differences along both in-plane axes (a second difference of white noise has variance 6
    sigma^2; edges are rare enough not to move the median)."""
    d = np.concatenate([(stack[:, :, :-2] - 2 * stack[:, :, 1:-1] + stack[:, :, 2:]).ravel(),
                        (stack[:, :-2] - 2 * stack[:, 1:-1] + stack[:, 2:]).ravel()])
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(6.0))


def _bisect(make, lag: int, target: float, lo: float, hi: float, iters: int = 20):
    """``make(p)`` for the ``p`` in ``[lo, hi]`` whose rows' structure at ``lag`` meets ``target``
    (rows get smoother as ``p`` grows)."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if structure(make(mid), lag) > target:
            lo = mid
        else:
            hi = mid
    return make((lo + hi) / 2)


def matched_rows(rows: np.ndarray, lag: int, target: float, noise: float,
                 rng: np.random.Generator) -> np.ndarray:
    """``rows (K, A, L)`` brought to structure ``target`` at ``lag`` along ``L`` (see the module)."""
    own = structure(rows, lag)
    if own <= 0 or abs(own - target) <= TOLERANCE * own:
        return rows
    if target < own:  # rougher than through-plane: blur, and put the white noise back
        white = rng.standard_normal(rows.shape).astype(np.float32)
        impulse = np.zeros(81)
        impulse[40] = 1.0

        def blurred(sigma: float) -> np.ndarray:
            kept = float(np.square(ndimage.gaussian_filter1d(impulse, sigma)).sum())
            return (ndimage.gaussian_filter1d(rows, sigma, axis=2)
                    + white * (noise * np.sqrt(max(0.0, 1.0 - kept))))

        return _bisect(blurred, lag, target, 0.0, 20.0)

    def coarser(zoom: float) -> np.ndarray:  # smoother than through-plane: a coarser pixel
        smooth = ndimage.gaussian_filter1d(rows, 0.45 / zoom, axis=2) if zoom < 0.9 else rows
        return ndimage.zoom(smooth, (1, 1, zoom), order=1)

    return _bisect(coarser, lag, target, 0.1, 1.0)


def matched_planes(x: np.ndarray, missing: np.ndarray, seed: int = 0) -> list[Tensor]:
    """Plane stacks ``(K, A, L)`` (both in-plane orientations) from up to ``SLICES`` acquired slices of
    the normalised ``x (Z, H, W)``, matched to its through-plane structure; empty when it cannot be
    measured (fewer than two acquired slices) or the rows are too short for the gap pattern."""
    missing = np.asarray(missing, dtype=bool)
    through = through_structure(x, missing)
    if through is None:
        return []
    lag, target = through
    acquired = np.flatnonzero(~missing)
    picks = np.linspace(0, len(acquired) - 1, min(SLICES, len(acquired))).round().astype(int)
    pick = acquired[np.unique(picks)]
    stack = np.ascontiguousarray(x[pick], dtype=np.float32)
    noise, rng = noise_sigma(stack), np.random.default_rng(seed)
    planes = []
    for rows in (stack.transpose(0, 2, 1), stack):  # rows along H, then along W
        matched = matched_rows(np.ascontiguousarray(rows), lag, target, noise, rng)
        if matched.shape[2] >= MIN_ROW:
            planes.append(torch.from_numpy(np.ascontiguousarray(matched, dtype=np.float32)))
    return planes


class InPlaneCheck:
    """The second view, prepared once per scan: matched planes, windows of the gap pattern, the truth
    on their missing rows and every plain interpolation there; refiners are scored on demand."""

    def __init__(self, x: np.ndarray, missing: np.ndarray, methods: tuple[str, ...], seed: int = 0,
                 device: torch.device | str = "cpu", batch: int = 16):
        self.device, self.batch = device, batch
        draw, rng = cyclic_pattern(missing), np.random.default_rng(seed)
        self.cases: list[tuple[Tensor, np.ndarray]] = []  # (linearly filled planes, missing rows)
        truth, parts = [], {m: [] for m in methods}
        for stack in matched_planes(x, missing, seed):
            arr = stack.numpy()
            for _ in range(DRAWS):
                gaps = draw(stack.shape[2], rng)
                truth.append(stack[..., gaps].reshape(-1))
                linear = torch.from_numpy(fill_missing(arr, gaps, 2, "linear"))  # what refiners correct
                for method in methods:
                    filled = linear if method == "linear" else torch.from_numpy(
                        fill_missing(arr, gaps, 2, method))
                    parts[method].append(filled[..., gaps].reshape(-1))
                self.cases.append((linear, gaps))
        self.truth = torch.cat(truth).double() if truth else None
        self.preds = {m: torch.cat(p).double() for m, p in parts.items()} if truth else {}

    def __bool__(self) -> bool:
        return self.truth is not None

    def predictions(self, refiners: Mapping[str, torch.nn.Module]) -> dict[str, Tensor]:
        """The interpolations' and ``refiners``' values on the missing rows (flattened)."""
        out = dict(self.preds)
        for name, net in refiners.items():
            values = [refine_planes(net, planes, gaps, self.device, self.batch)[..., gaps].ravel()
                      for planes, gaps in self.cases]
            out[name] = torch.cat(values).double()
        return out
