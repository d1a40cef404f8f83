"""Per-scan calibration of the uncertainty map on the scan's own hidden acquired slices.

The spread of the diffusion model's samples ranks where a reconstruction is unsure, but its scale is
not a probability. The scan itself can calibrate it: hide acquired slices (the check's first hold-out
mask), reconstruct them with the same blend and sample the same model, and compare the true errors
there with the sampled standard deviation. The scale ``s`` is the split-conformal quantile of the score
``|error| / std`` (Angelopoulos et al. 2022), divided by the Gaussian z of the nominal coverage, so that
``result +- z * s * std`` holds the truth for that share of the hidden voxels; ``s * std`` is the map the
user gets. The hold-out gaps are wider than the real ones (every other acquired slice is hidden too),
so errors and spread are both larger there: their ratio is what carries over.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

NOMINAL_COVERAGE = 0.90
STD_FLOOR = 1e-6  # relative to the mean std: keeps |e| / std finite where the samples agree exactly


def z_value(coverage: float = NOMINAL_COVERAGE) -> float:
    """Half-width of a central Gaussian interval with this coverage, in std units (1.645 for 90%)."""
    return NormalDist().inv_cdf(0.5 + coverage / 2)


def conformal_scale(errors: np.ndarray, std: np.ndarray, coverage: float = NOMINAL_COVERAGE) -> float:
    """Scale ``s`` with ``|errors| <= z * s * std`` on a share ``coverage`` of the entries.

    The quantile is split conformal's ``ceil((n + 1) * coverage) / n`` (the finite-sample guarantee for
    exchangeable entries; voxels of one scan are correlated, so read it as a calibration, measured).
    """
    errors, std = np.abs(np.asarray(errors, np.float64)).ravel(), np.asarray(std, np.float64).ravel()
    floor = STD_FLOOR * max(float(std.mean()), 1e-12)
    score = errors / np.maximum(std, floor)
    n = score.size
    level = min(1.0, math.ceil((n + 1) * coverage) / n)
    return float(np.quantile(score, level, method="higher")) / z_value(coverage)


def coverage(errors: np.ndarray, std: np.ndarray, z: float) -> float:
    """Share of entries with ``|error| <= z * std``."""
    return float(np.mean(np.abs(errors) <= z * np.asarray(std)))


def holdout_calibration(model, x: np.ndarray, missing: np.ndarray, fill, sampling, device,
                        progress=None) -> tuple[float, dict]:
    """The scale of the sampled std on this scan, from its hidden acquired slices.

    Args:
        model: the ``InpaintingModel`` that sampled the uncertainty.
        x: ``(Z, H, W)`` normalised volume (acquired slices exact).
        missing: ``(Z,)`` bool.
        fill: ``fill(x_lin, gaps)`` the estimate's blend for other gaps (``adapt.Refined.fill``), or
            None when the estimate is the diffusion model's own mean (``refine="off"``).
        sampling: ``SamplingOptions`` of the real run (the same samples, steps and seed).

    Returns:
        ``(scale, info)``: scale 1.0 and ``calibrated: False`` when nothing can be hidden (fewer than
        3 acquired slices); ``info`` goes into the result's metadata.
    """
    from ldm_med.inpainting.blend import holdout_masks
    from ldm_med.inpainting.interpolate import fill_missing
    from ldm_med.inpainting.sampling import sample_corrections

    z = z_value(NOMINAL_COVERAGE)
    masks = holdout_masks(missing)
    if not masks:
        return 1.0, {"calibrated": False, "nominal_coverage": NOMINAL_COVERAGE,
                     "why": "fewer than 3 acquired slices: none can be hidden to calibrate the map"}
    held = masks[0]
    gaps = np.asarray(missing, dtype=bool) | held
    x_lin = fill_missing(x, gaps, axis=0, method="linear")
    x_h = fill(x_lin, gaps) if fill is not None else x_lin
    report = (lambda stage, done, total: progress(f"calibrate {stage}", done, total)) if progress else None
    corrections = sample_corrections(model, x_h.astype(np.float32), gaps, sampling, device, report)
    on_held = held[gaps]  # which of the sampled gap slices were hidden acquired ones
    estimate = x_h[held] + (corrections.mean(axis=0)[on_held] if fill is None else 0.0)
    errors, std = estimate - x[held], corrections.std(axis=0)[on_held]
    scale = conformal_scale(errors, std)
    return scale, {"calibrated": True, "scale": round(scale, 5), "nominal_coverage": NOMINAL_COVERAGE,
                   "interval": f"result +- {z:.3f} std", "held_slices": np.flatnonzero(held).tolist(),
                   "holdout_coverage_before": round(coverage(errors, std, z), 4)}
