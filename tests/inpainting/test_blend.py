"""The check on hidden acquired slices: which slices it hides, the simplex least squares, the anchor it
picks (a spline on smooth data, linear on step edges), and a refiner that hurts switched off."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from volumes import smooth_volume

from ldm_med.inpainting import blend
from ldm_med.inpainting.adapt import adapt_and_refine
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.inpainting.refine import AdaptOptions, refine
from ldm_med.masks import keep_every
from ldm_med.nets.refiner import SliceGapRefiner


def sinusoids(shape=(40, 24, 24), seed=0) -> np.ndarray:
    """Slices-first volume, smooth along every axis (a spline beats linear interpolation here)."""
    return smooth_volume(shape, seed)


def steps(shape=(40, 24, 24), seed=0) -> np.ndarray:
    """Piecewise-constant slabs with sharp edges between slices (splines overshoot; linear wins)."""
    rng = np.random.default_rng(seed)
    levels = rng.choice([-0.8, 0.0, 0.8], size=shape[0] // 3 + 1).repeat(3)[: shape[0]]
    texture = rng.normal(0, 0.02, shape[1:])
    return (levels[:, None, None] + texture[None]).astype(np.float32)


def shifted_refiner(shift: float) -> SliceGapRefiner:
    """A refiner that adds ``shift`` to linear interpolation on every missing row."""
    net = SliceGapRefiner(4, 2)
    net.body[-1].bias.data.fill_(shift)
    return net


def test_holdout_masks_hide_interior_acquired_slices_two_ways():
    missing = keep_every(24, 4)  # acquired 0, 4, ..., 20
    masks = blend.holdout_masks(missing)
    assert [np.flatnonzero(m).tolist() for m in masks] == [[4, 12], [8, 16]]
    assert blend.holdout_masks(keep_every(8, 7)) == []  # 2 acquired slices: nothing to hide


def test_simplex_least_squares_finds_the_convex_mix_and_respects_the_bounds():
    rng = np.random.default_rng(0)
    a, b, c = (torch.from_numpy(rng.normal(size=500)) for _ in range(3))
    truth = 0.3 * a + 0.7 * b
    w = blend.simplex_least_squares({"a": a, "b": b, "c": c}, truth)
    assert w["a"] == pytest.approx(0.3, abs=1e-6) and w["b"] == pytest.approx(0.7, abs=1e-6)
    assert w["c"] == pytest.approx(0.0, abs=1e-6)
    far = blend.simplex_least_squares({"a": a, "b": b}, 2.0 * a - b)  # outside the simplex: a vertex
    assert far == pytest.approx({"a": 1.0, "b": 0.0})
    same = blend.simplex_least_squares({"a": a, "a2": a.clone()}, a)  # singular pairs are fine
    assert sum(same.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("make, expected", [(sinusoids, {"cubic", "bspline", "lanczos"}),
                                            (steps, {"linear"})])
def test_the_anchor_is_the_interpolation_that_fits_the_scan(make, expected):
    x = make()
    result = blend.check(x, keep_every(x.shape[0], 3), {}, stride=2)
    assert result.anchor in expected
    assert result.weights == pytest.approx({result.anchor: 1.0})
    assert result.rmse[result.anchor] == min(result.rmse.values())


def test_a_refiner_that_hurts_is_switched_off():
    x = sinusoids()
    missing = keep_every(x.shape[0], 3)
    result = blend.check(x, missing, {"pretrained": shifted_refiner(0.5)}, stride=2)
    assert "pretrained" not in result.weights
    assert result.rmse["pretrained"] > result.rmse[result.anchor]


@pytest.mark.parametrize("pretrained, tuned, expected", [(0.0, 1.0, 1.0), (1.0, 0.0, 0.0), (1.0, -1.0, 0.5)])
def test_two_refiners_blend_by_least_squares(pretrained, tuned, expected):
    x = sinusoids((25, 20, 20))
    missing = keep_every(25, 2)
    nets = {"pretrained": shifted_refiner(pretrained), "fine-tuned": shifted_refiner(tuned)}
    result = blend.check(x, missing, nets, stride=2, methods=("linear",), min_gain=0.0)
    w = result.weights.get("pretrained", 0.0) + result.weights.get("linear", 0.0) * 0.5
    assert w == pytest.approx(expected, abs=0.1)


def test_adapt_and_refine_returns_the_blend_the_check_chose():
    x = sinusoids((24, 32, 32))
    missing = keep_every(24, 4)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    torch.manual_seed(0)
    net = SliceGapRefiner(8, 3)
    pre = refine(copy.deepcopy(net), x_c, missing)
    out = adapt_and_refine(net, x_c, missing, (1.0, 1.0, 1.0), AdaptOptions(steps=20, batch_size=4,
                                                                             crop=(16, 16)))
    weights = out.check.weights
    assert weights and sum(weights.values()) == pytest.approx(1.0)
    parts = {"pretrained": pre, "fine-tuned": refine(net, x_c, missing)}
    expected = sum(w * (parts[n] if n in parts else fill_missing(x_c, missing, 0, n))
                   for n, w in weights.items())
    np.testing.assert_allclose(out.volume[missing], expected[missing], atol=1e-5)
    np.testing.assert_array_equal(out.volume[~missing], x_c[~missing])
    plain = adapt_and_refine(copy.deepcopy(net), x_c, keep_every(24, 12), (1.0, 1.0, 1.0),
                             AdaptOptions(steps=0))
    assert plain.check.rmse == {} and plain.check.weights == {}  # 2 acquired slices: nothing to hide


def test_a_refiner_that_barely_helps_is_not_worth_the_risk():
    x = sinusoids((25, 20, 20))
    missing = keep_every(25, 2)
    nets = {"pretrained": shifted_refiner(0.01)}  # a hair off linear: no clear gain on the check
    kept = blend.check(x, missing, nets, stride=2, methods=("linear",), min_gain=0.0)
    cautious = blend.check(x, missing, nets, stride=2, methods=("linear",), min_gain=0.03)
    assert "pretrained" in kept.weights
    assert cautious.weights == {"linear": 1.0}
    assert cautious.rmse["blend"] > (1 - 0.03) * cautious.rmse["linear"]


def test_refine_progress_counts_plane_batches_and_can_cancel():
    from ldm_med.errors import Cancelled

    x = sinusoids((24, 32, 40))
    missing = keep_every(24, 4)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    seen = []
    adapt_and_refine(SliceGapRefiner(4, 2), x_c, missing, (1.0, 1.0, 1.0),
                     AdaptOptions(steps=0, apply_batch=8, blend=False),
                     progress=lambda s, d, t: seen.append((s, d, t)))
    refine_calls = [c for c in seen if c[0] == "refine"]
    assert refine_calls[0] == ("refine", 0, 4 + 5) and refine_calls[-1] == ("refine", 9, 9)

    def stop(stage, done, total):
        if stage == "refine" and done == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        adapt_and_refine(SliceGapRefiner(4, 2), x_c, missing, (1.0, 1.0, 1.0),
                         AdaptOptions(steps=0, apply_batch=8, blend=False), progress=stop)
