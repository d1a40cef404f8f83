"""Reconstruct missing slices of a volume: the main job.

    volume -> normalise (acquired slices) -> linear interpolation x_c
      -> refine: slice-gap refiner (shipped: one for CT, a general one for the rest) fine-tuned on the scan's
         own in-plane gaps, blended with the pretrained one by a through-plane check on hidden acquired
         slices (``adapt``) -> estimate x_a
      -> latent diffusion: N samples of the latent residual around the estimate, over overlapping windows
         (MONAI sliding windows, Gaussian blending, every step), decoded as D(z_a + s_r r) - D(z_a)
      -> result x_a, uncertainty = per-voxel std of the samples
      -> un-normalise -> paste acquired slices bit-exact

Why both: on every volume we measured, the scan-adapted refiner's estimate is closer to the truth than
the mean of the diffusion model's samples (``docs/benchmarks.md``), while only the generative model says
how much a missing slice could plausibly differ. So the result is the refiner's estimate and the samples
are centred on it: the posterior samples are the estimate plus each decoded residual minus their mean,
and the uncertainty map is their spread. ``refine="off"`` gives the diffusion model alone (result
``x_c + mean of the decoded residual samples``), for comparison.

``method="linear"|"cubic"`` runs the same validation, normalisation and paste, without the models, so
comparisons are like for like. See ``ldm_med.inpainting`` for the diffusion formulation
(``latent``), the window-by-window sampling (``sampling``) and the refiner (``refine``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.inpainting.latent import ANCHOR
from ldm_med.options import ReconstructOptions
from ldm_med.progress import Progress
from ldm_med.volume import Volume


@dataclass
class Reconstruction:
    """The result of ``reconstruct``.

    Attributes:
        volume: the completed volume, in the input's geometry; acquired slices bit-exact.
        uncertainty: per-voxel standard deviation over the posterior samples (zero on acquired
            slices), same shape as ``volume.data``; ``None`` with fewer than two samples.
        samples: ``(N, *volume.shape)`` posterior samples (acquired slices pasted in each); ``None``
            with fewer than two samples.
        missing: ``(n_slices,)`` bool, the slices that were filled.
        seconds: wall time of the reconstruction.
    """

    volume: Volume
    uncertainty: np.ndarray | None
    missing: np.ndarray
    seconds: float
    samples: np.ndarray | None = None


def validate(volume: Volume, missing: np.ndarray) -> np.ndarray:
    """Check a reconstruction request; returns ``missing`` as bool. Raises ``InputError``."""
    source = volume.metadata.get("source", "input")
    missing = np.asarray(missing, dtype=bool)
    if missing.shape != (volume.n_slices,):
        raise InputError(f"{source}: missing-slice mask has {missing.size} entries, "
                         f"the volume has {volume.n_slices} slices along axis {volume.slice_axis}")
    n_acquired = int((~missing).sum())
    if n_acquired < 2:
        raise InputError(f"{source}: {n_acquired} acquired slice(s) along axis {volume.slice_axis}; "
                         "at least 2 are needed to reconstruct the others")
    if min(s for i, s in enumerate(volume.shape) if i != volume.slice_axis) < 2:
        raise InputError(f"{source}: volume of shape {volume.shape} is 2D; a 3D volume is needed")
    acquired = volume.slices_first()[~missing]
    if not np.isfinite(acquired).all():
        bad = np.flatnonzero(~missing)[~np.isfinite(acquired).all(axis=(1, 2))]
        raise InputError(f"{source}: NaN or inf voxels in acquired slice(s) {bad.tolist()[:10]}; "
                         "mark them missing (--missing auto does) or clean the input")
    return missing


def reconstruct(volume: Volume, missing: np.ndarray, options: ReconstructOptions | None = None,
                progress: Progress | None = None) -> Reconstruction:
    """Fill the slices marked in ``missing`` (bool over ``volume.slice_axis``).

    Acquired slices of the result are the input's values, bit for bit. The result is the refiner's
    estimate (``options.refine`` ``"adapt"`` or ``"pretrained"``), or the mean of the diffusion
    model's samples with ``refine="off"``. With ``options.samples > 1`` the result also holds the
    posterior samples and their per-voxel std (``uncertainty``). ``progress(stage, done, total)`` is
    called as the work proceeds; raising ``ldm_med.Cancelled`` from it stops the work.
    """
    opts = options or ReconstructOptions()
    missing = validate(volume, missing)
    start = time.perf_counter()
    data = volume.slices_first()  # (Z, A, B) view, original units
    anchor = ANCHOR if opts.method == "ldm" else opts.method
    filled = fill_missing(data, missing, axis=0, method=anchor)  # acquired slices copied exactly
    missing_samples, info = None, {}
    if opts.method == "ldm" and missing.any():
        estimate, missing_samples, info = model_estimate(volume, filled, missing, opts, progress)
        filled[missing] = estimate
    filled[~missing] = data[~missing]  # bit-exact paste, whatever happened above
    out = volume.with_data(np.moveaxis(filled, 0, volume.slice_axis), acquired=np.ones_like(missing))
    out.metadata["synthesised_slices"] = np.flatnonzero(missing).tolist()
    out.metadata["reconstruction"] = {"method": opts.method, "refine": opts.refine,
                                      "adapt_steps": opts.adapt_steps, "sampler": opts.sampler,
                                      "steps": opts.steps, "samples": opts.samples, "seed": opts.seed,
                                      **info}
    uncertainty = samples = None
    if missing_samples is not None:  # every sample: the result with its own missing slices
        samples = np.repeat(filled[None], len(missing_samples), axis=0)
        samples[:, missing] = missing_samples
        uncertainty = np.zeros_like(filled)
        uncertainty[missing] = missing_samples.std(axis=0)
        uncertainty = np.moveaxis(uncertainty, 0, volume.slice_axis)
        samples = np.moveaxis(samples, 1, volume.slice_axis + 1)
    return Reconstruction(out, uncertainty, missing, time.perf_counter() - start, samples)


def model_estimate(volume: Volume, anchor: np.ndarray, missing: np.ndarray, opts: ReconstructOptions,
                   progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """The missing slices, estimated by the models, in the volume's units.

    Args:
        anchor: ``(Z, A, B)`` volume with missing slices linearly interpolated.

    Returns:
        ``(estimate, samples, info)``: ``estimate (n_missing, A, B)``; ``samples (N, n_missing, A, B)``
        the posterior samples, centred on the estimate, their spread scaled by the calibration on
        hidden acquired slices, or None with fewer than two; ``info`` says what the check chose and
        how the uncertainty was calibrated (for the output's metadata).
    """
    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.inpainting.models import (
        SECOND_VIEW_MODALITIES,
        SKIP_FINE_TUNING_ABOVE_DB,
        default_refiner,
        load_inpainting_model,
        load_refiner,
    )
    from ldm_med.utils import resolve_device

    device = resolve_device(opts.device)
    imap = intensity_map_for(volume.with_data(volume.data, acquired=~missing))
    info = {}
    # load (and so check) every model asked for before any work; the shipped refiners are per modality
    refiner, modality = None, scan_modality(volume, imap)
    if opts.refine != "off":
        path = Path(opts.refiner) if opts.refiner else default_refiner(modality)
        refiner, info["refiner"] = load_refiner(path, device), path.name
    model = load_inpainting_model(opts.checkpoint, device) if opts.uses_diffusion or opts.checkpoint else None
    x = x_lin = imap.forward(anchor).astype(np.float32)  # (Z, A, B) normalised
    fill = None
    if refiner is not None:
        skip = opts.skip_margin
        if skip is None:  # the modality's own rule
            skip = SKIP_FINE_TUNING_ABOVE_DB.get(modality, math.inf)
        x, fill, choice = refined(refiner, volume, x, missing, opts, device, progress,
                                  second_view=modality in SECOND_VIEW_MODALITIES, skip_margin=skip)
        info.update(choice)
    estimate, samples = x[missing], None
    if opts.uses_diffusion:
        from ldm_med.inpainting.sampling import SamplingOptions, sample_corrections

        sampling = SamplingOptions(**{f.name: getattr(opts, f.name) for f in fields(SamplingOptions)})
        # with the refiner, the samples are centred on its estimate: only their spread is used
        corrections = sample_corrections(model, x, missing, sampling, device, progress,
                                         spread_only=opts.refine != "off")  # (N, M, A, B)
        if opts.refine == "off":
            estimate = estimate + corrections.mean(axis=0)
        if corrections.shape[0] > 1:
            samples = calibrated_samples(model, x, x_lin, missing, estimate, corrections, fill, sampling,
                                         device, progress, info)
            samples = imap.inverse(samples)
    return imap.inverse(estimate), samples, info


def scan_modality(volume: Volume, imap) -> str:
    """What the scan holds, for the shipped refiner and the check: CT when its intensities are
    Hounsfield units (``imap``: its ``IntensityMap``), else the modality the file says, upper case."""
    return "CT" if imap.is_ct else str(volume.metadata.get("modality") or "").upper()


def calibrated_samples(model, x, x_lin, missing, estimate, corrections, fill, sampling, device, progress,
                       info: dict) -> np.ndarray:
    """The posterior samples ``(N, n_missing, A, B)`` (normalised) centred on ``estimate``, each voxel's
    spread set to the map calibrated on hidden acquired slices (``calibrate.holdout_calibration``)."""
    from ldm_med.inpainting.calibrate import STD_FLOOR, holdout_calibration, map_features
    from ldm_med.inpainting.sampling import spread_decoder

    scale, weights, info["uncertainty"] = holdout_calibration(model, x, missing, fill, sampling, device,
                                                              progress)
    distilled = fill is not None and spread_decoder(model, sampling) is not model.ae
    info["uncertainty"]["decoder"] = "distilled (spread_decoder)" if distilled else "autoencoder"
    deviations = corrections - corrections.mean(axis=0, keepdims=True)
    std = corrections.std(axis=0)
    target = scale * (map_features(std, estimate, x_lin[missing]) @ weights)
    floor = STD_FLOOR * max(float(std.mean()), 1e-12)
    scaled = deviations * (target / np.maximum(std, floor))[None]
    # centred again: where the samples barely differ the ratio is large and magnifies the rounding left
    # in ``deviations``' mean (seen as 0.01 HU off the estimate on an AVX-512 machine)
    scaled -= scaled.mean(axis=0, keepdims=True)
    return (estimate[None] + scaled).astype(np.float32)


def refined(net, volume: Volume, x_c: np.ndarray, missing: np.ndarray, opts: ReconstructOptions, device,
            progress: Progress | None, second_view: bool = False,
            skip_margin: float = math.inf) -> tuple[np.ndarray, object, dict]:
    """``x_c (Z, A, B)`` normalised, with missing slices filled by the blend the check on hidden acquired
    slices chose among the refiner ``net`` (as shipped, and fine-tuned on the scan first with
    ``refine="adapt"``) and the plain interpolations; the blend as a function of other gaps; and what
    was chosen, for the metadata. ``second_view``: the blend is also chosen on in-plane rows at the
    real gap geometry (``blend.py``); ``skip_margin``: no fine-tuning when the pretrained refiner is
    that many dB ahead of the best interpolation on the check."""
    from ldm_med.inpainting.adapt import PRETRAINED, adapt_and_refine
    from ldm_med.inpainting.refine import AdaptOptions

    steps = opts.adapt_budget(int(missing.sum()) * x_c.shape[1] * x_c.shape[2])
    out = adapt_and_refine(net, x_c, missing, volume.spacing_slices_first(),
                           AdaptOptions(steps=steps, seed=opts.seed, inplane_view=second_view,
                                        skip_margin=skip_margin), device,
                           progress)
    check = out.check
    choice = {"adapt_budget": steps, "adapt_steps_used": out.tuned_steps,
              "blend": {k: round(w, 4) for k, w in check.weights.items()}}
    if out.skipped:
        margin = check.margin_db(PRETRAINED)
        choice["adapt_skipped"] = (f"the shipped refiner was {margin:.2f} dB ahead of the best interpolation "
                                   f"on the check (more than {skip_margin:g} dB)")
    if check.rmse:
        choice["anchor"] = check.anchor
        choice["check_rmse"] = {k: round(v, 5) for k, v in check.rmse.items()}
    if check.score:
        choice["inplane_rmse"] = {k: round(v, 5) for k, v in check.inplane_rmse.items()}
        choice["check_score"] = {k: round(v, 4) for k, v in check.score.items()}
    return out.volume, out.fill, choice
