from __future__ import annotations

import numpy as np

from ldm_med import metrics


def test_psnr_known_value_and_only_chosen_slices():
    truth = np.zeros((8, 8, 10))
    truth[0, 0, 0], truth[1, 1, 1] = 0.0, 10.0  # data range 10
    est = truth.copy()
    est[..., 3] += 1.0  # error only on slice 3
    est[..., 5] += 100.0  # large error on a slice not evaluated
    assert metrics.psnr(truth, est, [3], axis=2) == np.float64(20.0)
    assert metrics.psnr(truth, truth, [3], axis=2) == float("inf")
    assert metrics.mae(truth, est, [3, 4], axis=2) == 0.5


def test_ssim_is_one_for_identical_and_lower_for_noise():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(32, 32, 6))
    assert metrics.ssim(truth, truth, [1, 2]) == 1.0
    noisy = truth + rng.normal(scale=0.5, size=truth.shape)
    assert metrics.ssim(truth, noisy, [1, 2]) < 0.9
