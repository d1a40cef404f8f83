"""Per-scan calibration of the uncertainty map on the scan's own hidden acquired slices.

The spread of the diffusion model's samples ranks where a reconstruction is unsure, but its scale is
not a probability. The scan itself can calibrate it: hide acquired slices (the check's first hold-out
mask), reconstruct them with the same blend and sample the same model, and compare the true errors
there with the sampled standard deviation. The scale ``s`` is the split-conformal quantile of the score
``|error| / std`` (Angelopoulos et al. 2022), divided by the Gaussian z of the nominal coverage, so that
``result +- z * s * std`` holds the truth for that share of the hidden voxels; ``s * std`` is the map the
user gets. The hold-out gaps are wider than the real ones (every other acquired slice is hidden too),
so errors and spread are both larger there: their ratio is what carries over.

The spread alone ranked the errors no better than two maps anyone can compute (``bench/uncertainty.py``:
``|result - linear|`` and the in-plane gradient of the linear estimate). So the map is fitted on the
same hidden slices: ``a * std + b * |result - linear| + c * gradient`` with ``a, b, c >= 0``, the
weights that rank the hidden errors best (Spearman), then scaled as above. The weights are in the
metadata; where the samples' spread does not predict this scan's errors, its weight says so.
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


FEATURES = ("samples_std", "abs_result_minus_linear", "linear_gradient")
FIT_ENTRIES = 50_000  # voxels the weights are fitted on (a fixed random subset of larger hold-outs)


def map_features(std: np.ndarray, estimate: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """``(..., 3)`` per-voxel features of slices ``(K, H, W)``: the samples' std, ``|estimate - linear|``,
    and the in-plane gradient magnitude of the linear estimate."""
    grad = np.hypot(*np.gradient(np.asarray(linear, np.float64), axis=(1, 2)))
    return np.stack([np.asarray(std, np.float64), np.abs(np.asarray(estimate, np.float64) - linear), grad],
                    axis=-1)


def fit_map_weights(errors: np.ndarray, features: np.ndarray, grid: int = 10) -> np.ndarray:
    """Non-negative weights ``w`` for ``features @ w`` that rank ``|errors|`` best (Spearman).

    A map is for telling where the errors are large: what matters is its ranking, and its scale is
    the calibration's job. Each feature is divided by its RMS, the weights run over the simplex in
    steps of ``1 / grid``, and the best rank correlation wins (ties: the earlier, more samples'
    spread). The samples' std alone (``[1, 0, 0]``) when nothing can be fitted.
    """
    y = np.abs(np.asarray(errors, np.float64)).ravel()
    f = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    fallback = np.array([1.0] + [0.0] * (f.shape[1] - 1))
    if y.size > FIT_ENTRIES:
        idx = np.random.default_rng(0).permutation(y.size)[:FIT_ENTRIES]
        y, f = y[idx], f[idx]
    norms = np.sqrt((f ** 2).mean(axis=0))
    if not y.any() or not norms.any():
        return fallback
    f = f / np.where(norms > 0, norms, 1.0)
    rank_y = average_ranks(y)
    best, best_rho = fallback, -np.inf
    for combo in _simplex(f.shape[1], grid):
        rho = float(np.corrcoef(rank_y, average_ranks(f @ combo))[0, 1])
        if np.isfinite(rho) and rho > best_rho + 1e-9:
            best, best_rho = combo, rho
    w = best / np.where(norms > 0, norms, 1.0)
    return w if w.any() else fallback


def average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of ``a (N,)``, ties sharing their average rank: ``scipy.stats.rankdata``'s default,
    to the bit, without importing scipy.stats (1-1.5 s of a process on 2 cores, for one function)."""
    order = np.argsort(a)  # any order within a tie group gives the same averages
    ordered = a[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])  # tie groups, and the end
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(0.5 * (starts[:-1] + starts[1:] + 1), np.diff(starts))
    return ranks


def _simplex(k: int, grid: int):
    """Points of the simplex in ``k`` dimensions with coordinates in steps of ``1 / grid``, the first
    coordinate largest first."""
    import itertools

    for parts in itertools.product(range(grid, -1, -1), repeat=k - 1):
        if sum(parts) <= grid:
            yield np.array([*parts, grid - sum(parts)], dtype=np.float64) / grid


def coverage(errors: np.ndarray, std: np.ndarray, z: float) -> float:
    """Share of entries with ``|error| <= z * std``."""
    return float(np.mean(np.abs(errors) <= z * np.asarray(std)))


def holdout_calibration(model, x: np.ndarray, missing: np.ndarray, fill, sampling, device,
                        progress=None) -> tuple[float, np.ndarray, dict]:
    """The map's weights and scale on this scan, from its hidden acquired slices.

    Args:
        model: the ``InpaintingModel`` that sampled the uncertainty.
        x: ``(Z, H, W)`` normalised volume (acquired slices exact).
        missing: ``(Z,)`` bool.
        fill: ``fill(x_lin, gaps)`` the estimate's blend for other gaps (``adapt.Refined.fill``), or
            None when the estimate is the diffusion model's own mean (``refine="off"``).
        sampling: ``SamplingOptions`` of the real run (the same samples, steps and seed).

    Returns:
        ``(scale, weights, info)``: the map is ``scale * map_features(...) @ weights``; scale 1.0,
        the samples' std alone and ``calibrated: False`` when nothing can be hidden (fewer than 3
        acquired slices); ``info`` goes into the result's metadata.
    """
    from ldm_med.inpainting.blend import holdout_masks
    from ldm_med.inpainting.interpolate import fill_missing
    from ldm_med.inpainting.sampling import sample_corrections

    z = z_value(NOMINAL_COVERAGE)
    masks = holdout_masks(missing)
    if not masks:
        return 1.0, np.array([1.0, 0.0, 0.0]), {
            "calibrated": False, "nominal_coverage": NOMINAL_COVERAGE, "map": "samples_std",
            "why": "fewer than 3 acquired slices: none can be hidden to calibrate the map"}
    held = masks[0]
    gaps = np.asarray(missing, dtype=bool) | held
    x_lin = fill_missing(x, gaps, axis=0, method="linear")
    x_h = fill(x_lin, gaps) if fill is not None else x_lin
    report = (lambda stage, done, total: progress(f"calibrate {stage}", done, total)) if progress else None
    corrections = sample_corrections(model, x_h.astype(np.float32), gaps, sampling, device, report,
                                     decode=held, spread_only=fill is not None)  # (N, hidden slices, A, B)
    estimate = x_h[held] + (corrections.mean(axis=0) if fill is None else 0.0)
    errors, std = estimate - x[held], corrections.std(axis=0)
    features = map_features(std, estimate, x_lin[held])
    weights = fit_map_weights(errors, features)
    raw = features @ weights
    scale = conformal_scale(errors, raw)
    return scale, weights, {
        "calibrated": True, "scale": round(scale, 5), "nominal_coverage": NOMINAL_COVERAGE,
        "interval": f"result +- {z:.3f} std", "held_slices": np.flatnonzero(held).tolist(),
        "map": "scale * (w . features), weights fitted on the hidden slices",
        "weights": {name: float(f"{w:.4g}") for name, w in zip(FEATURES, weights)},
        "holdout_coverage_before": round(coverage(errors, raw, z), 4)}
