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
are centred on it: their mean is the result and their spread the uncertainty map. ``refine="off"`` gives
the diffusion model alone (result ``x_c + mean of the decoded residual samples``), for comparison.

``method="linear"|"cubic"`` runs the same validation, normalisation and paste, without the models, so
comparisons are like for like. See ``latent_inpaint`` for the diffusion formulation and ``adapt`` for the
refiner.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.pipelines.interpolate import fill_missing
from ldm_med.pipelines.latent_inpaint import ANCHOR
from ldm_med.volume import Volume

METHODS = ("ldm", "linear", "cubic")
REFINE_MODES = ("adapt", "pretrained", "off")
Progress = Callable[[str, int, int], None]  # (stage, done, total); may raise Cancelled


@dataclass
class ReconstructOptions:
    """How to reconstruct.

    ``refine``: ``"adapt"`` fine-tunes the slice-gap refiner on the scan for ``adapt_steps`` steps,
    ``"pretrained"`` uses it as shipped, ``"off"`` leaves the estimate to the diffusion model.
    ``samples``: latent-diffusion samples; with the refiner on, one sample adds nothing to the estimate, so
    the diffusion model runs only for ``samples > 1`` (the uncertainty map). ``roi`` is the latent window
    ``(slices, h, w)`` the denoiser sees.
    """

    method: str = "ldm"
    refine: str = "adapt"
    adapt_steps: int = 300
    refiner: str | None = None
    sampler: str = "dpm++2m"
    steps: int = 2
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    checkpoint: str | None = None
    roi: tuple[int, int, int] = (16, 64, 64)
    overlap: float = 0.25
    window_batch: int = 4
    slice_batch: int = 32


@dataclass
class Reconstruction:
    """Result: the completed volume (input geometry), per-voxel std over samples, and what was filled."""

    volume: Volume
    uncertainty: np.ndarray | None
    missing: np.ndarray
    seconds: float


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

    Acquired slices of the result are the input's values, bit for bit. With ``options.samples > 1``
    the result is the mean of the posterior samples and ``uncertainty`` their per-voxel std.
    """
    opts = options or ReconstructOptions()
    if opts.method not in METHODS:
        raise InputError(f"unknown method {opts.method!r}; valid: {', '.join(METHODS)}")
    if opts.refine not in REFINE_MODES:
        raise InputError(f"unknown refine mode {opts.refine!r}; valid: {', '.join(REFINE_MODES)}")
    if opts.adapt_steps < 0 or opts.samples < 1 or opts.steps < 1:
        raise InputError("--adapt-steps must be >= 0, --samples and --steps >= 1")
    missing = validate(volume, missing)
    start = time.perf_counter()
    data = volume.slices_first()  # (Z, A, B) view, original units
    anchor = ANCHOR if opts.method == "ldm" else opts.method
    filled = fill_missing(data, missing, axis=0, method=anchor)  # acquired slices copied exactly
    uncertainty, info = None, {}
    if opts.method == "ldm" and missing.any():
        estimate, spread, info = model_estimate(volume, filled, missing, opts, progress)
        filled[missing] = estimate
        if spread is not None:
            uncertainty = np.zeros_like(filled)
            uncertainty[missing] = spread
    filled[~missing] = data[~missing]  # bit-exact paste, whatever happened above
    out = volume.with_data(np.moveaxis(filled, 0, volume.slice_axis), acquired=np.ones_like(missing))
    out.metadata["synthesised_slices"] = np.flatnonzero(missing).tolist()
    out.metadata["reconstruction"] = {"method": opts.method, "refine": opts.refine, "adapt_steps": opts.adapt_steps,
                                      "sampler": opts.sampler, "steps": opts.steps, "samples": opts.samples,
                                      "seed": opts.seed, **info}
    if uncertainty is not None:
        uncertainty = np.moveaxis(uncertainty, 0, volume.slice_axis)
    return Reconstruction(out, uncertainty, missing, time.perf_counter() - start)


def model_estimate(volume: Volume, anchor: np.ndarray, missing: np.ndarray, opts: ReconstructOptions,
                   progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """The missing slices, estimated by the models, in the volume's units.

    Args:
        anchor: ``(Z, A, B)`` volume with missing slices linearly interpolated.

    Returns:
        ``(estimate, std, info)``: the first two ``(n_missing, A, B)``, ``std`` None without several
        diffusion samples; ``info`` names the refiner and its blend weight (for the output's metadata).
    """
    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.pipelines.models import default_refiner, load_inpainting_model, load_refiner
    from ldm_med.utils import resolve_device

    device = resolve_device(opts.device)
    sampling = opts.refine == "off" or opts.samples > 1
    imap = intensity_map_for(volume.with_data(volume.data, acquired=~missing))
    info = {}
    # load (and so check) every model asked for before any work; the shipped refiners are per modality
    refiner = None
    if opts.refine != "off":
        path = Path(opts.refiner) if opts.refiner else default_refiner("CT" if imap.is_ct else "other")
        refiner, info["refiner"] = load_refiner(path, device), path.name
    model = load_inpainting_model(opts.checkpoint, device) if sampling or opts.checkpoint else None
    x = imap.forward(anchor).astype(np.float32)  # (Z, A, B) normalised
    if refiner is not None:
        x, info["pretrained_weight"] = refined(refiner, volume, x, missing, opts, device, progress)
    estimate, std = x[missing], None
    if sampling:
        from ldm_med.pipelines.sampling import sample_corrections

        corrections = sample_corrections(model, x, missing, opts, device, progress)  # (N, M, A, B)
        if opts.refine == "off":  # otherwise the samples are centred on the refiner's estimate
            estimate = estimate + corrections.mean(axis=0)
        std = corrections.std(axis=0) if corrections.shape[0] > 1 else None
    scale = (imap.hi - imap.lo) / 2.0  # normalised units -> volume units (linear map)
    return imap.inverse(estimate), (std * scale if std is not None else None), info


def refined(net, volume: Volume, x_c: np.ndarray, missing: np.ndarray, opts: ReconstructOptions, device,
            progress: Progress | None) -> tuple[np.ndarray, float | None]:
    """``x_c (Z, A, B)`` normalised, with missing slices corrected by the refiner ``net`` (fine-tuned on
    the scan first with ``refine="adapt"``), and the weight of the pretrained refiner in the blend."""
    from ldm_med.pipelines.adapt import AdaptOptions, adapt_and_refine

    steps = opts.adapt_steps if opts.refine == "adapt" else 0
    out = adapt_and_refine(net, x_c, missing, volume.spacing_slices_first(),
                           AdaptOptions(steps=steps, seed=opts.seed), device, progress)
    return out.volume, out.pretrained_weight
