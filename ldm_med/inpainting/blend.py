"""The self-check on hidden acquired slices, and the blend it chooses.

A scan's acquired slices are the only truth a reconstruction has about that scan. The check hides some
of them (every other interior acquired slice, two ways), fills the enlarged gaps with every candidate,
and compares with the hidden values in the true through-plane direction:

* the refiners (pretrained and, with ``adapt``, fine-tuned on the scan), which correct linear
  interpolation;
* the plain interpolations (``interpolate.METHODS``): the one with the smallest error is the scan's
  anchor, so smooth volumes get a spline and sharp ones linear.

The result is the convex blend of the refiners and the anchor with the least-squares weights of that
check. A refiner that hurts on a scan gets weight 0 there, and the blend can be the plain interpolation
alone: the check, not a fixed rule, decides.

Hidden slices make gaps twice the real ones. With ``inplane=True`` the check also scores every candidate
on a second view at the real gap geometry (``matched.py``: in-plane rows brought to the through-plane
structure, the scan's own gap pattern); the anchor and the weights then minimise the sum of both views'
squared errors, each relative to its best plain interpolation.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ldm_med.inpainting.interpolate import METHODS, fill_missing
from ldm_med.inpainting.matched import InPlaneCheck
from ldm_med.inpainting.refine import refine_planes, through_planes

# Below this share of RMSE gain on the check the plain interpolation is kept. Off by default: the
# check's gaps are wider than the real ones (hiding every other acquired slice turns x4 into x8) and
# what a refiner gains there mispredicts the real gain in both directions. A 3% rule kept a 24-channel
# astronomical cube at linear's level (the blend lost 1.0 dB to linear there at x4) but threw away the
# CT refiner on a CT phantom, which gained 2.4% RMSE on the check and about 1.9 dB at the real x4 gaps.
MIN_GAIN = 0.0
# The check runs the refiners on every stride-th through-plane plane, on at most this many planes and
# voxels per orientation: on a 256x256x128 volume every 4th plane made each check cost half a
# whole-volume pass (7.7 s), and the fine-tuning's early stop runs the check every 25 steps. The
# benchmark volumes (up to 128x128x48) keep stride 4.
MAX_CHECK_PLANES, MAX_CHECK_VOXELS = 32, 32 * 128 * 48


@dataclass
class Check:
    """What the check found: RMSE per candidate on the hidden slices (normalised units), the anchor
    (the best plain interpolation) and the blend weights (candidates with weight 0 left out); with the
    second view, its RMSE per candidate too, and the ``score`` that chose (both views' RMS error
    relative to each view's best plain interpolation: 1.0 is that interpolation on both)."""

    rmse: dict[str, float] = field(default_factory=dict)
    anchor: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    inplane_rmse: dict[str, float] = field(default_factory=dict)
    score: dict[str, float] = field(default_factory=dict)

    def margin_db(self, name: str) -> float:
        """How much lower the candidate ``name``'s RMSE on the hidden slices is than the best plain
        interpolation's, in dB (positive: the candidate is better)."""
        best = min(v for k, v in self.rmse.items() if k in METHODS)
        return 20.0 * float(np.log10(max(best, 1e-12) / max(self.rmse[name], 1e-12)))


def holdout_masks(missing: np.ndarray) -> list[np.ndarray]:
    """Acquired slices to hide for the check: every other interior acquired slice, two ways.

    Each mask marks the hidden slices (True); the outermost acquired slices always stay. Empty when
    fewer than 3 slices are acquired.
    """
    acquired = np.flatnonzero(~np.asarray(missing, dtype=bool))
    masks = []
    for offset in (1, 2):
        held = np.zeros(len(missing), dtype=bool)
        held[acquired[offset:-1:2]] = True
        if held.any():
            masks.append(held)
    return masks


def _hidden(volume: Tensor, held: np.ndarray, stride: int) -> Tensor:
    """The hidden slices of ``volume (Z, H, W)`` on every ``stride``-th plane of both through-plane
    orientations, flattened (the planes the refiners see in the check)."""
    return torch.cat([view[::stride][..., held].reshape(-1) for view in through_planes(volume)])


def _refined_hidden(net: torch.nn.Module, x_lin: Tensor, gaps: np.ndarray, held: np.ndarray, stride: int,
                    device: torch.device | str, batch: int) -> Tensor:
    return torch.cat([refine_planes(net, view[::stride], gaps, device, batch)[..., held].reshape(-1)
                      for view in through_planes(x_lin)])


def check(x: np.ndarray, missing: np.ndarray, refiners: Mapping[str, torch.nn.Module], stride: int = 4,
          device: torch.device | str = "cpu", batch: int = 16, methods: tuple[str, ...] = METHODS,
          min_gain: float = MIN_GAIN, inplane: bool = False) -> Check:
    """Run the check on the normalised volume ``x (Z, H, W)`` (missing slices may hold anything).

    ``refiners`` maps a name to a refiner network; they run on every ``stride``-th through-plane plane
    only (at most ``MAX_CHECK_PLANES`` planes and ``MAX_CHECK_VOXELS`` voxels per orientation). The
    blend is kept only when it lowers the anchor's RMSE by at least ``min_gain`` (a share); otherwise
    the anchor alone is the estimate. ``inplane``: add the second view (module docstring). An empty
    ``Check`` when fewer than 3 slices are acquired.
    """
    checker = HiddenSliceCheck(x, missing, stride, device, batch, methods)
    return checker.score(refiners, min_gain=min_gain, inplane=inplane)


class HiddenSliceCheck:
    """The check, prepared once for a scan and scored many times (the fine-tuning's early stop): the
    hidden truths and the plain interpolations are computed here, a refiner named in ``fixed`` is run
    once and remembered."""

    def __init__(self, x: np.ndarray, missing: np.ndarray, stride: int = 4,
                 device: torch.device | str = "cpu", batch: int = 16, methods: tuple[str, ...] = METHODS):
        self.missing = np.asarray(missing, dtype=bool)
        stride = max(stride, -(-max(x.shape[1:]) // MAX_CHECK_PLANES), -(-x.size // MAX_CHECK_VOXELS))
        self.stride, self.device, self.batch, self.methods = stride, device, batch, methods
        self.masks = holdout_masks(self.missing)
        self.x_lin, truths = [], []
        self.preds: dict[str, Tensor] = {}
        parts: dict[str, list[Tensor]] = {m: [] for m in methods}
        x_true = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        for held in self.masks:
            gaps = self.missing | held
            truths.append(_hidden(x_true, held, stride))
            x_lin = torch.from_numpy(fill_missing(x, gaps, axis=0, method="linear"))  # what refiners correct
            self.x_lin.append(x_lin)
            for method in methods:
                filled = x_lin if method == "linear" else torch.from_numpy(fill_missing(x, gaps, 0, method))
                parts[method].append(_hidden(filled, held, stride))
        if self.masks:
            self.truth = torch.cat(truths).double()
            self.preds = {m: torch.cat(p).double() for m, p in parts.items()}
        self._x, self._inplane = x, None

    def inplane(self) -> InPlaneCheck:
        """The second view (``matched.py``), prepared on first use."""
        if self._inplane is None:
            self._inplane = InPlaneCheck(self._x, self.missing, self.methods, device=self.device,
                                         batch=self.batch)
        return self._inplane

    def _refined(self, net: torch.nn.Module) -> Tensor:
        return torch.cat([_refined_hidden(net, x_lin, self.missing | held, held, self.stride, self.device,
                                          self.batch)
                          for held, x_lin in zip(self.masks, self.x_lin)]).double()

    def score(self, refiners: Mapping[str, torch.nn.Module], fixed: tuple[str, ...] = (),
              min_gain: float = MIN_GAIN, inplane: bool = False) -> Check:
        """The check of ``refiners`` and the plain interpolations (see ``check``)."""
        if not self.masks:
            return Check()
        flat = dict(self.preds)
        for name, net in refiners.items():
            flat[name] = self.preds[name] if name in self.preds and name in fixed else self._refined(net)
            if name in fixed:
                self.preds[name] = flat[name]
        views = [(flat, self.truth)]
        second = self.inplane() if inplane else None
        if second:
            views.append((second.predictions(refiners), second.truth))
        pooled, truth = _pooled(views, self.methods)
        score = {name: _rms(p, truth, len(views)) for name, p in pooled.items()}
        anchor = min(self.methods, key=score.__getitem__)
        weights = simplex_least_squares({n: pooled[n] for n in [*refiners, anchor]}, truth)
        score["blend"] = _rms(sum(w * pooled[n] for n, w in weights.items()), truth, len(views))
        rmse = {name: _rms(p, self.truth) for name, p in flat.items()}
        rmse["blend"] = _rms(sum(w * flat[n] for n, w in weights.items()), self.truth)
        inplane_rmse = {name: _rms(p, views[1][1]) for name, p in views[1][0].items()} if second else {}
        if min_gain > 0 and score["blend"] > (1.0 - min_gain) * score[anchor]:  # refiners do not clearly pay
            weights = {anchor: 1.0}
        return Check(rmse, anchor, {n: w for n, w in weights.items() if w > 0}, inplane_rmse,
                     score if second else {})


def _rms(pred: Tensor, truth: Tensor, views: int = 0) -> float:
    """RMSE, or with ``views`` the root of the summed squared error over ``views``."""
    sq = (pred - truth).square()
    return float((sq.sum() / views if views else sq.mean()).sqrt())


def _pooled(views: list[tuple[dict[str, Tensor], Tensor]], methods: tuple[str, ...]
            ) -> tuple[dict[str, Tensor], Tensor]:
    """Every view's predictions and truth divided by its best plain interpolation's root summed
    squared error, concatenated: each view weighs the same, whatever its number of voxels and units."""
    scaled = []
    for preds, truth in views:
        unit = min(float((preds[m] - truth).square().sum().sqrt()) for m in methods) or 1.0
        scaled.append(({n: p / unit for n, p in preds.items()}, truth / unit))
    names = [n for n in scaled[0][0] if all(n in preds for preds, _ in scaled)]
    return ({n: torch.cat([preds[n] for preds, _ in scaled]) for n in names},
            torch.cat([truth for _, truth in scaled]))


def simplex_least_squares(preds: Mapping[str, Tensor], truth: Tensor) -> dict[str, float]:
    """Weights ``w >= 0``, ``sum w = 1`` minimising ``|sum_i w_i p_i - y|^2``.

    Exact for a handful of candidates: the best of the equality-constrained solutions over every
    subset of candidates whose weights come out non-negative (a single candidate always qualifies).
    """
    names = list(preds)
    p = torch.stack([preds[n] for n in names]).double()  # (C, N)
    gram, corr = p @ p.T, p @ truth.double()
    best, best_err = {names[0]: 1.0}, float("inf")
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), size):
            idx = list(subset)
            w = _constrained_solve(gram[idx][:, idx], corr[idx])
            if w is None or (w < -1e-12).any():
                continue
            full = torch.zeros(len(names), dtype=torch.float64)
            full[idx] = w.clamp(min=0.0)
            err = float(full @ gram @ full - 2 * full @ corr)
            if err < best_err - 1e-12 * abs(err):
                full = full / full.sum()
                best_err, best = err, {names[i]: float(full[i]) for i in range(len(names))}
    return best


def _constrained_solve(gram: Tensor, corr: Tensor) -> Tensor | None:
    """``argmin w^T G w - 2 c^T w`` subject to ``sum w = 1`` (KKT system); None if singular."""
    k = gram.shape[0]
    kkt = torch.zeros(k + 1, k + 1, dtype=torch.float64)
    kkt[:k, :k], kkt[:k, k], kkt[k, :k] = 2 * gram, 1.0, 1.0
    rhs = torch.cat([2 * corr, torch.ones(1, dtype=torch.float64)])
    try:
        return torch.linalg.solve(kkt, rhs)[:k]
    except RuntimeError:  # singular: two candidates that are the same
        return None
