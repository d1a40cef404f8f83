"""Distances between sets of generated and real samples, without downloaded weights.

Each sample is reduced to a description, and two sets are compared with the **energy distance**
``2 E d(X, Y) - E d(X, X') - E d(Y, Y')`` (Szekely & Rizzo; zero only for equal distributions), so a
method must match the *spread* of the data, not only its average:

* ``power``: the radially averaged log10 power spectrum (Euclidean distance between spectra);
* ``histogram``: the sample's intensity quantiles; the distance between two samples is the 1-Wasserstein
  distance of their intensity histograms (the mean absolute difference of their quantile functions);
* ``features``: the project's own autoencoder's mean latent, pooled to a 4x4 grid per channel plus the
  channel means and standard deviations (Euclidean distance between feature vectors).

A baseline that gives every sample the data's mean spectrum and pooled histogram (shaped noise) matches
those averages exactly, but not their spread: it scores zero only if all data samples looked alike.
Samples are compared in the model's intensity range (the preset's stretch), so presets are comparable.
"""
from __future__ import annotations

import numpy as np

QUANTILES = np.linspace(0.005, 0.995, 64)


def radial_power(x: np.ndarray, bins: int = 24) -> np.ndarray:
    """Radially averaged log10 power spectrum of a 2D image, or the mean over the axial planes of a volume
    given as ``(D, H, W)``: ``bins`` values from the lowest to the Nyquist frequency."""
    planes = x[None] if x.ndim == 2 else x
    centred = planes - planes.mean(axis=(1, 2), keepdims=True)
    f = np.fft.fftshift(np.abs(np.fft.fft2(centred)) ** 2, axes=(1, 2))
    power = f.mean(axis=0)
    h, w = power.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h // 2) / h, (xx - w // 2) / w)
    edges = np.linspace(0.0, 0.5, bins + 1)
    idx = np.clip(np.digitize(r.ravel(), edges) - 1, 0, bins)
    sums = np.bincount(idx, power.ravel(), minlength=bins + 1)[:bins]
    counts = np.maximum(np.bincount(idx, minlength=bins + 1)[:bins], 1)
    return np.log10(sums / counts + 1e-12)


def quantiles(x: np.ndarray) -> np.ndarray:
    return np.quantile(np.asarray(x, dtype=np.float64).ravel(), QUANTILES)


def energy_distance(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> float:
    """Energy distance between two sets of description vectors ``(n, k)`` and ``(m, k)``. ``metric``
    ``euclidean``, or ``wasserstein`` for quantile vectors (mean absolute difference)."""
    def d(u, v):
        diff = u[:, None, :] - v[None, :, :]
        if metric == "wasserstein":
            return np.abs(diff).mean(axis=2)
        return np.sqrt((diff ** 2).sum(axis=2))

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(max(2.0 * d(a, b).mean() - d(a, a).mean() - d(b, b).mean(), 0.0))


def autoencoder_features(ae, x: np.ndarray) -> np.ndarray:
    """Feature vector of one sample (model range, ``(H, W)`` or ``(D, H, W)``) from the autoencoder."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        planes = t[None, None] if t.ndim == 2 else t[:, None]
        mu = ae.encode(planes)[0]                                   # (P, C, h, w)
        pooled = F.adaptive_avg_pool2d(mu, 4).mean(dim=0).ravel()  # 4x4 grid per channel
        stats = torch.cat([mu.mean(dim=(0, 2, 3)), mu.std(dim=(0, 2, 3))])
    return torch.cat([pooled, stats]).numpy()


def nearest_distance(samples: list[np.ndarray], reference: list[np.ndarray]) -> np.ndarray:
    """Per sample, the RMS difference to its nearest reference sample."""
    ref = np.stack([r.ravel() for r in reference]).astype(np.float32)
    out = []
    for s in samples:
        diff = ref - s.ravel()[None].astype(np.float32)
        out.append(float(np.sqrt((diff ** 2).mean(axis=1)).min()))
    return np.array(out)


def shaped_noise(reference: list[np.ndarray], n: int, seed: int = 0) -> list[np.ndarray]:
    """Baseline: Gaussian noise with the reference set's mean power spectrum (per frequency), then mapped
    onto its pooled intensity histogram (rank matching)."""
    rng = np.random.default_rng(seed)
    ref = np.stack(reference).astype(np.float64)
    axes = tuple(range(1, ref.ndim))
    spectra = np.abs(np.fft.fftn(ref - ref.mean(axis=axes, keepdims=True), axes=axes)) ** 2
    amp = np.sqrt(spectra.mean(axis=0))
    pooled = np.sort(ref.ravel())
    out = []
    for _ in range(n):
        noise = np.fft.fftn(rng.standard_normal(ref.shape[1:]))
        field = np.real(np.fft.ifftn(noise * amp))
        ranks = np.argsort(np.argsort(field.ravel()))
        values = pooled[(ranks * (len(pooled) - 1) // max(1, field.size - 1))]
        out.append(values.reshape(field.shape).astype(np.float32))
    return out


def covered_range(values, low: float, high: float) -> tuple[float, float]:
    """The part of a declared attribute range ``[low, high]`` that measured ``values`` (of training
    samples) cover: their minimum to maximum, clipped to the declared range. A model cannot be asked
    to reproduce a value it never saw: the 3D astronomical cubes, for one, hold 3-26 sources where
    the declared range (the 2D sky images') goes to 60."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite attribute values to take a range from")
    lo, hi = max(float(v.min()), float(low)), min(float(v.max()), float(high))
    if lo >= hi:
        raise ValueError(f"the values ({v.min():g}-{v.max():g}) do not overlap the range {low:g}-{high:g}")
    return lo, hi


def spearman(x, y) -> float:
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input has no rank correlation: 0 below
        rho = spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else 0.0
