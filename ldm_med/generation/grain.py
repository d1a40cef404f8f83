"""The grain a decoder leaves out, measured once per class and added back to generated samples.

A KL autoencoder's decoder returns a smooth mean: fine texture and noise are lost in the round trip
``x -> decode(encode(x))``. White noise of one robust standard deviation (what generation added at first)
is the wrong grain: measured on the shipped 2D model, CT samples kept 1.1 decades too little power at the
highest frequencies (edge errors dominate the residual, the robust std sees none of them) and
astronomical and molecular samples got 0.5 decades too much (their residual is not white).

So the residual's own spectrum is kept instead: per class, its amplitude as a function of radial
in-plane frequency (``grain_profile``, ``GRAIN_BINS`` values from 0 to the corner frequency, in
cycles per pixel), and ``grain`` draws Gaussian noise with that spectrum for any image size, plane by
plane for volumes (the autoencoder works on slices). Expected power: exactly the residual's, per
frequency.

Stationary grain of that spectrum is still wrong in one way: the residual is not spread evenly. On CT it
is 0.01 in air and soft tissue and 0.1-0.2 at bone and edges; stationary grain gave air the edges'
noise and doubled the histogram distance to real samples. So the grain is also modulated by an
**envelope** (``grain_envelope``): the residual's rms as a function of the decoded intensity, relative
to its rms overall (``ENVELOPE_BINS`` quantile bins; mean square 1 over the training samples, so the
spectrum's power is kept on average). Measured on the shipped 2D model (16 samples per preset):
histogram distance CT 0.111 -> 0.053, MR 0.208 -> 0.099, power distance 0.43 -> 0.44 and 0.58 -> 0.64.

The decoder is also biased, by class and intensity: it returns a molecular map's flat background
0.13-0.25 too low (it learned the range from CT and MR, where that level is air), so samples missed the
data's histogram by far more than its grain. ``decoder_bias`` records the mean error per intensity bin
and ``debias`` removes it, before the grain (measured on the residual that remains) is added. On the 2D
model (16 samples) it took molecular histogram distances 0.27 -> 0.03 and feature distances 4.6 -> 0.29,
below the shaped-noise baseline for the first time.

Training records the profiles at export; ``python -m ldm_med.train.regrain MODEL`` adds them to a
generation model trained before they were recorded (the shipped ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAIN_BINS = 32
ENVELOPE_BINS = 12
_CORNER = float(np.sqrt(0.5))  # the largest radial frequency of a 2D grid, cycles per pixel


def _radius(h: int, w: int) -> np.ndarray:
    return np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))


def grain_profile(residuals: np.ndarray) -> list[float]:
    """Radial amplitude profile of residual planes ``(P, H, W)``: per bin, ``sqrt(mean |FFT|^2 / (H W))``
    (the per-pixel amplitude white noise must be given at that frequency to have the same power)."""
    res = np.asarray(residuals, dtype=np.float64)
    res = res - res.mean(axis=(-2, -1), keepdims=True)
    h, w = res.shape[-2:]
    power = (np.abs(np.fft.fft2(res)) ** 2).reshape(-1, h, w).mean(axis=0) / (h * w)
    idx = np.minimum((_radius(h, w) / _CORNER * GRAIN_BINS).astype(int), GRAIN_BINS - 1).ravel()
    sums = np.bincount(idx, power.ravel(), minlength=GRAIN_BINS)
    counts = np.bincount(idx, minlength=GRAIN_BINS)
    mean = np.divide(sums, counts, out=np.zeros(GRAIN_BINS), where=counts > 0)
    filled = np.interp(np.arange(GRAIN_BINS), np.flatnonzero(counts), mean[counts > 0])  # empty bins
    return [round(float(a), 6) for a in np.sqrt(filled)]


def grain(shape: tuple[int, ...], profile: list[float], rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of ``shape`` (``(H, W)``, or ``(..., H, W)`` planes drawn independently) with the
    radial amplitude ``profile`` (``grain_profile``); float32, zero mean per plane."""
    h, w = shape[-2:]
    centres = (np.arange(len(profile)) + 0.5) / len(profile) * _CORNER
    amp = np.interp(_radius(h, w), centres, np.asarray(profile, dtype=np.float64))
    amp[0, 0] = 0.0
    white = rng.standard_normal(shape)
    return np.real(np.fft.ifft2(np.fft.fft2(white) * amp)).astype(np.float32)


def _intensity_bins(decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Quantile bins of the ``decoded`` intensity: each voxel's bin, the non-empty bins' voxel counts
    (zero for empty ones: many voxels can share one value, air or background) and their medians."""
    dec = np.asarray(decoded, dtype=np.float64).ravel()
    edges = np.quantile(dec, np.linspace(0.0, 1.0, ENVELOPE_BINS + 1))
    idx = np.clip(np.searchsorted(edges, dec, side="right") - 1, 0, ENVELOPE_BINS - 1)
    counts = np.bincount(idx, minlength=ENVELOPE_BINS)
    centres = [float(np.median(dec[idx == i])) for i in np.flatnonzero(counts)]
    return idx, counts, centres


def grain_envelope(decoded: np.ndarray, residuals: np.ndarray) -> list[list[float]]:
    """``[[intensity, ratio], ...]``: per quantile bin of the ``decoded`` intensity, the bin's median and
    the rms of the ``residuals`` there (per-plane means removed) over their rms everywhere."""
    res = np.asarray(residuals, dtype=np.float64)
    res = (res - res.mean(axis=(-2, -1), keepdims=True)).ravel()
    idx, counts, centres = _intensity_bins(decoded)
    keep = counts > 0
    ms = np.bincount(idx, res * res, ENVELOPE_BINS)[keep] / counts[keep]
    ratio = np.sqrt(ms / max(float(np.mean(res * res)), 1e-20))
    return [[round(c, 5), round(float(r), 5)] for c, r in zip(centres, ratio)]


def decoder_bias(decoded: np.ndarray, truth: np.ndarray) -> list[list[float]]:
    """``[[intensity, offset], ...]``: per quantile bin of the ``decoded`` intensity, the bin's median
    and the offset that moves it towards the mean ``truth`` there, the decoder's systematic error.

    The corrected value ``intensity + offset`` is kept monotone and never steeper than the decoder
    (between neighbouring bins it rises by 0 to 1 times what the decoded intensity rises), then shifted
    to the bins' conditional means in least squares: a correction may flatten the decoder's range (a
    molecular map's background, decoded 0.13-0.25 too low and uneven, becomes one level) but never
    stretch it, since stretching amplifies what the sampler puts there as well as the decoder's own
    error. Uncapped, the 3D astronomical background was stretched 2.8 times and its power-spectrum
    distance rose from 1.36 to 1.73; capped, it fell to 1.25."""
    dec = np.asarray(decoded, dtype=np.float64).ravel()
    err = np.asarray(truth, dtype=np.float64).ravel() - dec
    idx, counts, centres = _intensity_bins(dec)
    keep = counts > 0
    c = np.asarray(centres)
    target = c + np.bincount(idx, err, ENVELOPE_BINS)[keep] / counts[keep]  # conditional means
    rise = np.concatenate([[0.0], np.cumsum(np.clip(np.diff(target), 0.0, np.diff(c)))])
    corrected = rise + np.average(target - rise, weights=counts[keep])
    return [[round(float(a), 5), round(float(b - a), 5)] for a, b in zip(c, corrected)]


def debias(decoded: np.ndarray, bias: list[list[float]]) -> np.ndarray:
    """``decoded`` plus the ``bias`` offset (``decoder_bias``) at its intensity (held constant beyond the
    first and last bins): the conditional mean of the truth given the decoded value."""
    values, offsets = np.asarray(bias, dtype=np.float64).T
    return (decoded + np.interp(decoded, values, offsets)).astype(np.float32)


def debias_tensor(decoded, bias: list[list[float]]):
    """``debias`` on a torch tensor, differentiable in ``decoded`` (attribute steering)."""
    import torch

    values, offsets = (torch.as_tensor(c, device=decoded.device, dtype=decoded.dtype)
                       for c in np.asarray(bias, dtype=np.float64).T)
    x = decoded.clamp(values[0], values[-1])
    i = torch.searchsorted(values, x.contiguous()).clamp(1, len(values) - 1)
    frac = (x - values[i - 1]) / (values[i] - values[i - 1]).clamp_min(1e-12)
    return decoded + (offsets[i - 1] + (offsets[i] - offsets[i - 1]) * frac)


def modulate(noise: np.ndarray, decoded: np.ndarray, envelope: list[list[float]]) -> np.ndarray:
    """``noise`` scaled voxel by voxel by the ``envelope`` (``grain_envelope``) at the ``decoded``
    intensity (held constant beyond its first and last bins)."""
    values, ratios = np.asarray(envelope, dtype=np.float64).T
    return (noise * np.interp(decoded, values, ratios)).astype(np.float32)


@dataclass(frozen=True)
class Grain:
    """What a class's round trip ``decode(encode(x))`` leaves out: the residual's robust std, its radial
    spectrum (``grain_profile``), its envelope over intensity (``grain_envelope``) and the decoder's
    mean error over intensity (``decoder_bias``)."""

    robust_std: float
    profile: list[float]
    envelope: list[list[float]]
    bias: list[list[float]]

    def as_class_info(self) -> dict:
        """The fields of a generation model's class record (``train.gendata.ClassInfo``)."""
        return {"residual_std": self.robust_std, "grain": tuple(self.profile),
                "grain_envelope": tuple(map(tuple, self.envelope)),
                "decoder_bias": tuple(map(tuple, self.bias))}


def measure_grain(ae, x: np.ndarray) -> Grain:
    """The ``Grain`` of ``x - decode(encode(x))`` for samples ``x`` in the model range, ``(B, H, W)``
    images or ``(B, D, H, W)`` volumes (encoded slice by slice)."""
    import torch

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
        device = next(ae.parameters()).device
        t = t.to(device)
        if t.ndim == 4:
            rec = ae.decode(ae.encode(t)[0])
        else:
            rec = ae.decode_volume(ae.encode_volume(t))
        rec = rec.float().cpu()[:, 0].numpy()
    x = np.asarray(x, dtype=np.float32)
    bias = decoder_bias(rec, x)
    r = debias(rec, bias) - x  # the grain is what the bias correction leaves
    flat = r.ravel()
    robust = float(1.4826 * np.median(np.abs(flat - np.median(flat))))
    return Grain(robust, grain_profile(r.reshape(-1, *r.shape[-2:])), grain_envelope(rec, r), bias)
