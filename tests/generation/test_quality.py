"""The generation benchmark's distances: zero for a set against itself, larger as sets drift apart, and
blind neither to spread (shaped noise) nor to the spectrum."""
from __future__ import annotations

import numpy as np

from ldm_med.generation import quality as q


def _smooth_fields(n, seed, sigma=2.0, scale=1.0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return [scale * ndimage.gaussian_filter(rng.standard_normal((32, 32)), sigma) for _ in range(n)]


def test_energy_distance_is_zero_on_itself_and_grows_with_a_shift():
    a = np.random.default_rng(0).standard_normal((40, 5))
    assert q.energy_distance(a, a) == 0.0
    near, far = q.energy_distance(a, a + 0.2), q.energy_distance(a, a + 1.0)
    assert 0 < near < far


def test_power_spectrum_tells_smooth_from_rough():
    smooth, rough, other = _smooth_fields(12, 0, 3.0), _smooth_fields(12, 1, 0.7), _smooth_fields(12, 2, 3.0)
    ps = [np.stack([q.radial_power(x) for x in s]) for s in (smooth, rough, other)]
    assert q.energy_distance(ps[0], ps[2]) < 0.2 * q.energy_distance(ps[0], ps[1])
    assert q.radial_power(smooth[0])[-1] < q.radial_power(rough[0])[-1]


def test_shaped_noise_matches_the_mean_spectrum_and_histogram_but_not_the_spread():
    # data whose samples differ in contrast: shaped noise copies the pooled statistics only
    data = [f * s for f, s in zip(_smooth_fields(24, 3), np.linspace(0.2, 3.0, 24))]
    noise = q.shaped_noise(data, 24, seed=1)
    pooled = np.sort(np.concatenate([d.ravel() for d in data]))
    np.testing.assert_allclose(q.quantiles(noise[0]), q.quantiles(pooled), atol=0.05 * pooled.std())
    hist = lambda s: np.stack([q.quantiles(x) for x in s])  # noqa: E731
    fresh = [f * s for f, s in zip(_smooth_fields(24, 4), np.linspace(0.2, 3.0, 24))]
    assert q.energy_distance(hist(fresh), hist(data), "wasserstein") < q.energy_distance(
        hist(noise), hist(data), "wasserstein")


def test_nearest_distance_finds_copies():
    ref = _smooth_fields(5, 5)
    d = q.nearest_distance([ref[2] + 1e-3, _smooth_fields(1, 9)[0]], ref)
    assert d[0] < 2e-3 < d[1]


def test_spearman_handles_constant_input():
    assert q.spearman([1, 2, 3], [2, 4, 9]) == 1.0 and q.spearman([1, 2, 3], [5, 5, 5]) == 0.0


def test_covered_range_is_the_values_span_clipped_to_the_declared_range():
    assert q.covered_range([5.0, 9.0, 26.0, float("nan")], 3.0, 60.0) == (5.0, 26.0)
    assert q.covered_range([1.0, 9.0, 70.0], 3.0, 60.0) == (3.0, 60.0)
    import pytest

    with pytest.raises(ValueError):
        q.covered_range([70.0, 80.0], 3.0, 60.0)
