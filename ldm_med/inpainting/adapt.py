"""Refine a scan: fine-tune the refiner on the scan's own in-plane gaps, check every candidate on hidden
acquired slices, and return the blend the check chooses.

    x_c ──► fine-tune a copy of the pretrained refiner on in-plane pairs (refine.fit)      [adapt]
        ──► check on hidden acquired slices: pretrained, fine-tuned, linear, cubic,         [check]
            B-spline, Lanczos (blend.check) -> anchor = best interpolation, convex weights;
            run every 25 fine-tuning steps too: the best state is kept, and the fine-tuning
            stops when three checks in a row gain nothing; it does not start when the pretrained
            refiner already beats every interpolation by more than ``skip_margin`` dB
        ──► spectral cubes: the final choice also scores every candidate on in-plane rows   [second view]
            matched to the through-plane structure, at the real gap geometry (matched.py)
        ──► w_p * pretrained(x_c) + w_t * fine-tuned(x_c) + w_a * anchor(x_c)               [refine]

Fine-tuning helps where a scan's in-plane structure predicts its through-plane structure (real brains)
and hurts where it does not and the pretrained prior knows better (anatomy that repeats along the body
axis); on smooth data (density maps, astronomical cubes) a spline can beat both. The check on the scan
itself says which, so each candidate runs over the whole volume only when its weight is not zero.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ldm_med.inpainting.blend import Check, HiddenSliceCheck, holdout_masks
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.inpainting.refine import (
    AdaptOptions,
    fit,
    inplane_planes,
    mixed_patterns,
    plane_batches,
    refine,
)
from ldm_med.progress import Progress, no_progress

PRETRAINED, TUNED = "pretrained", "fine-tuned"


@dataclass
class Refined:
    """The estimate ``(Z, H, W)`` (normalised), the check that chose it (empty when nothing could be
    hidden, or with ``blend=False``), and ``fill(x, gaps)``: the same blend applied to other gaps of a
    linearly filled volume (the uncertainty calibration refills hidden slices with it); the fine-tuning
    steps kept, and whether the fine-tuning was skipped (``AdaptOptions.skip_margin``)."""

    volume: np.ndarray
    check: Check = field(default_factory=Check)
    fill: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    tuned_steps: int = 0
    skipped: bool = False  # the fine-tuning did not start: the pretrained refiner was far enough ahead


def adapt_and_refine(net: torch.nn.Module, x_c: np.ndarray, missing: np.ndarray, spacing: Sequence[float],
                     opts: AdaptOptions | None = None, device: torch.device | str = "cpu",
                     progress: Progress | None = None) -> Refined:
    """Fine-tune ``net`` (in place) for ``opts.steps`` steps, check, blend (see the module docstring).

    With ``opts.steps == 0``, or when the check before any fine-tuning puts the pretrained refiner more
    than ``opts.skip_margin`` dB ahead of the best interpolation, the pretrained refiner is checked
    against the interpolations alone.

    Args:
        x_c: ``(Z, H, W)`` normalised volume, missing slices linearly interpolated.
        missing: ``(Z,)`` bool.
        spacing: ``(dz, dh, dw)`` in mm.
    """
    opts = opts or AdaptOptions()
    missing = np.asarray(missing, dtype=bool)
    report = progress or no_progress
    candidates, tuned_steps = {PRETRAINED: net}, 0
    checker, result, skipped = _first_check(net, x_c, missing, opts, device, report)
    if opts.steps > 0 and not skipped:
        pretrained = copy.deepcopy(net)
        held = holdout_masks(missing) if opts.blend else []
        early = bool(result.rmse) and opts.stop_every > 0
        stopper = _EarlyStop(checker, pretrained, net, result, opts) if early else None
        # the hidden-slice patterns are trained on too, so the check compares like with like
        fit(net, inplane_planes(x_c, ~missing, spacing), mixed_patterns([missing, *held]), opts, device,
            progress, stop=stopper, every=opts.stop_every or opts.steps)
        candidates, tuned_steps = {PRETRAINED: pretrained, TUNED: net}, opts.steps
        if stopper is not None:
            result, tuned_steps = stopper.finish()
            if not tuned_steps:
                candidates = {PRETRAINED: pretrained}
        if result.rmse and (stopper is None or opts.inplane_view):  # the final choice, both views if asked
            result = checker.score(candidates, fixed=(PRETRAINED,), inplane=opts.inplane_view)
    weights = result.weights or {TUNED if TUNED in candidates else PRETRAINED: 1.0}
    fill = functools.partial(_blend, weights, candidates, opts=opts, device=device)
    return Refined(fill(x_c, missing, report=report), result, fill, tuned_steps, skipped)


def _first_check(net, x_c: np.ndarray, missing: np.ndarray, opts: AdaptOptions, device,
                 report: Progress) -> tuple[HiddenSliceCheck | None, Check, bool]:
    """The check before any fine-tuning (none with ``blend=False``), the pretrained refiner against the
    interpolations, and whether the fine-tuning is skipped: the refiner is more than
    ``opts.skip_margin`` dB ahead of the best interpolation there. Without fine-tuning this is the
    final choice, with the second view when asked."""
    if not opts.blend:
        return None, Check(), False
    report("check", 0, 1)
    checker = HiddenSliceCheck(x_c, missing, opts.check_stride, device, opts.apply_batch)
    nets, final = {PRETRAINED: net}, opts.inplane_view and not opts.steps
    result = checker.score(nets, fixed=(PRETRAINED,), inplane=final)
    skipped = bool(opts.steps and result.rmse and result.margin_db(PRETRAINED) > opts.skip_margin)
    if skipped and opts.inplane_view:
        result = checker.score(nets, fixed=(PRETRAINED,), inplane=True)
    report("check", 1, 1)
    return checker, result, skipped


class _EarlyStop:
    """``fit``'s stop rule (``AdaptOptions`` says it in words): check the fine-tuned refiner, keep the
    best state and its check, stop when the check stops improving."""

    def __init__(self, checker: HiddenSliceCheck, pretrained, net, first: Check, opts: AdaptOptions):
        self.checker, self.opts = checker, opts
        self.nets = {PRETRAINED: pretrained, TUNED: net}
        self.first, self.best, self.best_step, self.best_state = first, first, 0, None
        self.stale, self.done = 0, 0

    def __call__(self, done: int) -> bool:
        self.done = done
        result = self.checker.score(self.nets, fixed=(PRETRAINED,))
        if result.rmse["blend"] < (1.0 - self.opts.stop_tol) * self.best.rmse["blend"]:
            self.best, self.best_step, self.stale = result, done, 0
            self.best_state = copy.deepcopy(self.nets[TUNED].state_dict())
        else:
            self.stale += 1
        return self.stale >= self.opts.stop_patience

    def finish(self) -> tuple[Check, int]:
        """The check to blend by and the fine-tuning steps kept (0: the pretrained refiner alone)."""
        if self.done < self.opts.steps and self.stale < self.opts.stop_patience:  # ran the whole budget
            self(self.opts.steps)
        gained = self.best.rmse["blend"] < (1.0 - self.opts.keep_gain) * self.first.rmse["blend"]
        if self.best_step and gained:
            self.nets[TUNED].load_state_dict(self.best_state)
            return self.best, self.best_step
        return self.first, 0


def _blend(weights: dict[str, float], nets: dict[str, torch.nn.Module], x_c: np.ndarray, missing: np.ndarray,
           opts: AdaptOptions, device: torch.device | str, report: Progress = no_progress) -> np.ndarray:
    """``sum_i w_i * candidate_i(x_c)``: refiners by name, interpolations by method name. Progress
    counts batches of planes, so a cancel waits for one batch at most."""
    out = np.zeros_like(x_c, dtype=np.float32)
    per_net = plane_batches(x_c.shape, opts.apply_batch)
    total = sum(per_net if name in nets else 1 for name in weights)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        report("refine", done, total)

    report("refine", 0, total)
    for name, w in weights.items():
        if name in nets:
            estimate = refine(nets[name], x_c, missing, device, opts.apply_batch, on_batch=step)
        else:
            estimate = fill_missing(x_c, missing, axis=0, method=name)
            step()
        out += np.float32(w) * estimate
    out[~missing] = x_c[~missing]
    return out
