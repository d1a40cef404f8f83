"""Reconstruct missing slices of a volume: the main job.

    volume -> normalise (acquired slices) -> interpolation anchor x_c -> encode z_c -> sample the latent residual
    over overlapping windows (MONAI sliding windows, Gaussian blending, every step) -> decode ->
    x_c + D(z_c + s_r r) - D(z_c) on missing slices -> un-normalise -> paste acquired slices bit-exact

``method="linear"|"cubic"`` runs the same validation, normalisation and paste, without the model, so
comparisons are like for like. See ``latent_inpaint`` for the formulation.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ldm_med.errors import InputError
from ldm_med.pipelines.interpolate import fill_missing
from ldm_med.pipelines.latent_inpaint import ANCHOR
from ldm_med.volume import Volume

METHODS = ("ldm", "linear", "cubic")
Progress = Callable[[str, int, int], None]  # (stage, done, total); may raise Cancelled


@dataclass
class ReconstructOptions:
    """How to reconstruct. ``roi`` is the latent window ``(slices, h, w)`` the denoiser sees."""

    method: str = "ldm"
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
    missing = validate(volume, missing)
    start = time.perf_counter()
    data = volume.slices_first()  # (Z, A, B) view, original units
    anchor = ANCHOR if opts.method == "ldm" else opts.method
    filled = fill_missing(data, missing, axis=0, method=anchor)  # acquired slices copied exactly
    uncertainty = None
    if opts.method == "ldm" and missing.any():
        correction, spread = ldm_correction(volume, filled, missing, opts, progress)
        filled[missing] += correction
        if spread is not None:
            uncertainty = np.zeros_like(filled)
            uncertainty[missing] = spread
    filled[~missing] = data[~missing]  # bit-exact paste, whatever happened above
    out = volume.with_data(np.moveaxis(filled, 0, volume.slice_axis), acquired=np.ones_like(missing))
    out.metadata["synthesised_slices"] = np.flatnonzero(missing).tolist()
    out.metadata["reconstruction"] = {"method": opts.method, "sampler": opts.sampler, "steps": opts.steps,
                                      "samples": opts.samples, "seed": opts.seed}
    if uncertainty is not None:
        uncertainty = np.moveaxis(uncertainty, 0, volume.slice_axis)
    return Reconstruction(out, uncertainty, missing, time.perf_counter() - start)


def ldm_correction(volume: Volume, anchor: np.ndarray, missing: np.ndarray, opts: ReconstructOptions,
                   progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Generated correction to the interpolation anchor on missing slices, in the volume's units.

    Returns ``(mean, std)`` each ``(n_missing, A, B)``; ``std`` is None for one sample.
    """
    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.pipelines.models import load_inpainting_model
    from ldm_med.pipelines.sampling import sample_corrections
    from ldm_med.utils import resolve_device

    device = resolve_device(opts.device)
    model = load_inpainting_model(opts.checkpoint, device)
    imap = intensity_map_for(volume.with_data(volume.data, acquired=~missing))
    x_c = imap.forward(anchor).astype(np.float32)  # (Z, A, B) normalised
    corrections = sample_corrections(model, x_c, missing, opts, device, progress)  # (N, M, A, B)
    scale = (imap.hi - imap.lo) / 2.0  # normalised units -> volume units (linear map)
    mean = corrections.mean(axis=0) * scale
    std = corrections.std(axis=0) * scale if corrections.shape[0] > 1 else None
    return mean, std
