"""Calibration of the uncertainty map: the conformal scale reaches its nominal coverage on a synthetic
case with known noise, whatever scale the raw map had."""
from __future__ import annotations

import numpy as np
import pytest

from ldm_med.inpainting import calibrate
from ldm_med.inpainting.calibrate import conformal_scale, coverage, z_value


def test_z_value_is_the_gaussian_quantile():
    assert z_value(0.90) == pytest.approx(1.6449, abs=1e-4)
    assert z_value(0.95) == pytest.approx(1.9600, abs=1e-4)


@pytest.mark.parametrize("raw_scale", [0.2, 1.0, 7.0])
def test_calibrated_intervals_hold_their_nominal_coverage(raw_scale):
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 3.0, 20000)  # the true, spatially varying noise level
    fit_err, new_err = rng.normal(0, sigma), rng.normal(0, sigma)  # calibration pairs, fresh pairs
    raw = raw_scale * sigma  # a map that ranks well but has the wrong scale
    s = conformal_scale(fit_err, raw)
    assert s * raw_scale == pytest.approx(1.0, rel=0.05)
    assert coverage(new_err, s * raw, z_value(0.90)) == pytest.approx(0.90, abs=0.01)
    if raw_scale != 1.0:  # the raw map's intervals were wrong: the calibration is what fixed them
        assert abs(coverage(new_err, raw, z_value(0.90)) - 0.90) > 0.05


def test_zero_spread_does_not_break_the_scale():
    errors = np.array([0.0, 0.1, -0.2, 0.05])
    s = conformal_scale(errors, np.zeros(4))
    assert np.isfinite(s) and s > 0


def test_map_weights_find_the_feature_that_predicts_the_errors():
    from ldm_med.inpainting.calibrate import fit_map_weights, map_features

    rng = np.random.default_rng(1)
    shape = (6, 40, 40)
    linear = rng.normal(size=shape).cumsum(axis=2)  # some in-plane structure, so the gradient varies
    estimate = linear + rng.normal(0, 0.3, shape)
    useless_std = rng.uniform(0.5, 1.5, shape)  # spread unrelated to the errors
    sigma = np.abs(estimate - linear)  # the errors grow with |estimate - linear| only
    errors = rng.normal(0, 1, shape) * sigma
    feats = map_features(useless_std, estimate, linear)
    w = fit_map_weights(errors, feats)
    assert w.shape == (3,) and (w >= 0).all()
    assert w[1] > 5 * max(w[0], w[2])  # the fit picked |estimate - linear|
    fitted, std_only = feats @ w, useless_std
    assert np.corrcoef(fitted.ravel(), np.abs(errors).ravel())[0, 1] > \
        np.corrcoef(std_only.ravel(), np.abs(errors).ravel())[0, 1] + 0.2


def test_map_weights_fall_back_to_the_samples_spread_when_nothing_fits():
    from ldm_med.inpainting.calibrate import fit_map_weights

    assert fit_map_weights(np.zeros(10), np.ones((10, 3))).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("values", [
    np.random.default_rng(0).normal(size=5000),
    np.round(np.random.default_rng(1).normal(size=5000), 1),  # many ties
    np.zeros(7), np.array([3.0, 1.0, 2.0, 1.0, 3.0, 3.0]), np.array([np.inf, 1.0, -np.inf, 1.0]),
])
def test_average_ranks_are_scipys_rankdata(values):
    from scipy.stats import rankdata

    assert np.array_equal(calibrate.average_ranks(values), rankdata(values))
