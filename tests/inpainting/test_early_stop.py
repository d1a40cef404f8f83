"""The fine-tuning's early stop: scored by the check, best state kept, small gains dropped."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from volumes import smooth_volume

from ldm_med.inpainting.adapt import PRETRAINED, TUNED, _EarlyStop, adapt_and_refine
from ldm_med.inpainting.blend import Check, HiddenSliceCheck, check
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.inpainting.refine import AdaptOptions
from ldm_med.masks import keep_every
from ldm_med.nets.refiner import SliceGapRefiner


class ScriptedCheck:
    """Returns the blend RMSEs it is given, one per call; remembers the tuned net's weights each time."""

    def __init__(self, rmses):
        self.rmses, self.seen = list(rmses), []

    def score(self, refiners, fixed=()):
        self.seen.append(copy.deepcopy(refiners[TUNED].state_dict()))
        return Check({"blend": self.rmses.pop(0)}, "linear", {TUNED: 1.0})


def _stopper(rmses, **opts):
    net = SliceGapRefiner(4, 2)
    checker = ScriptedCheck(rmses)
    first = Check({"blend": 1.0})
    stop = _EarlyStop(checker, copy.deepcopy(net), net, first, AdaptOptions(steps=300, **opts))
    return stop, checker, net


def test_stops_after_patience_checks_without_gain_and_restores_the_best_state():
    stop, checker, net = _stopper([0.90, 0.95, 0.899], stop_tol=0.002, stop_patience=2)  # 0.899: < 0.2 %
    answers = []
    for done in (25, 50, 75):
        with torch.no_grad():
            net.body[0].bias.add_(1.0)  # a different state at every check
        answers.append(stop(done))
    assert answers == [False, False, True]
    result, steps = stop.finish()
    assert steps == 25 and result.rmse["blend"] == 0.90
    for key, value in net.state_dict().items():
        assert torch.equal(value, checker.seen[0][key])  # the state the best check saw


def test_a_gain_within_the_checks_jitter_keeps_the_pretrained_refiner():
    stop, _, _ = _stopper([0.997, 0.998, 0.999], keep_gain=0.005, stop_patience=2)
    assert [stop(d) for d in (25, 50, 75)] == [False, False, True]
    result, steps = stop.finish()
    assert steps == 0 and result.rmse["blend"] == 1.0  # the check before any fine-tuning


def test_a_run_that_never_stalls_is_checked_once_more_at_the_end():
    stop, checker, _ = _stopper([0.9, 0.8, 0.7], stop_patience=5)
    assert not stop(100) and not stop(200)
    result, steps = stop.finish()
    assert steps == 300 and result.rmse["blend"] == 0.7 and len(checker.seen) == 3


def test_prepared_check_equals_the_one_shot_check():
    x = smooth_volume((24, 20, 20))
    missing = keep_every(24, 3)
    nets = {PRETRAINED: SliceGapRefiner(4, 2), TUNED: SliceGapRefiner(4, 3)}
    prepared = HiddenSliceCheck(x, missing, stride=2)
    first = prepared.score(nets, fixed=(PRETRAINED,))
    again = prepared.score(nets, fixed=(PRETRAINED,))  # pretrained from the cache
    assert first == again == check(x, missing, nets, stride=2)


def test_fine_tuning_stops_early_where_the_check_sees_no_gain():
    x = smooth_volume((24, 32, 32))
    missing = keep_every(24, 4)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    torch.manual_seed(0)
    seen = []
    opts = AdaptOptions(steps=200, batch_size=4, crop=(16, 16), lr=1e-9, stop_every=10, stop_tol=0.002,
                        stop_patience=2)  # lr ~0: no gain
    out = adapt_and_refine(SliceGapRefiner(8, 3), x_c, missing, (1.0, 1.0, 1.0), opts,
                           progress=lambda s, d, t: seen.append((s, d)))
    assert max(d for s, d in seen if s == "adapt") == 20  # two checks without gain, of 200 steps
    assert out.tuned_steps == 0 and TUNED not in out.check.weights
    full = adapt_and_refine(SliceGapRefiner(8, 3), x_c, missing, (1.0, 1.0, 1.0),
                            AdaptOptions(steps=30, batch_size=4, crop=(16, 16), stop_every=0))
    assert full.tuned_steps == 30


@pytest.mark.parametrize("stop_every", [0, 25])
def test_acquired_slices_pass_through_either_way(stop_every):
    x = smooth_volume((20, 24, 24))
    missing = keep_every(20, 2)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    out = adapt_and_refine(SliceGapRefiner(8, 3), x_c, missing, (1.0, 1.0, 1.0),
                           AdaptOptions(steps=60, batch_size=4, crop=(16, 16), stop_every=stop_every))
    np.testing.assert_array_equal(out.volume[~missing], x_c[~missing])


def _ct_case():
    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.data.phantoms import ct_body
    from ldm_med.inpainting.models import default_refiner, load_refiner

    vol = ct_body(shape=(64, 64, 24), seed=5)
    missing = np.zeros(24, bool)
    missing[[5, 11, 17]] = True
    imap = intensity_map_for(vol.with_data(vol.data, acquired=~missing))
    x_c = imap.forward(fill_missing(vol.slices_first(), missing, axis=0, method="linear")).astype(np.float32)
    return load_refiner(default_refiner("CT")), x_c, missing, vol.spacing_slices_first()


def test_no_fine_tuning_when_the_pretrained_refiner_is_far_ahead_on_the_check():
    net, x_c, missing, spacing = _ct_case()
    before = copy.deepcopy(net.state_dict())
    first = check(x_c, missing, {PRETRAINED: net})
    margin = first.margin_db(PRETRAINED)
    assert margin > 0.5  # the shipped CT refiner beats every interpolation on a CT phantom
    opts = AdaptOptions(steps=10, batch_size=4, crop=(16, 16))
    seen = []
    out = adapt_and_refine(net, x_c, missing, spacing, replace(opts, skip_margin=margin - 0.1),
                           progress=lambda s, d, t: seen.append(s))
    assert out.skipped and out.tuned_steps == 0 and "adapt" not in seen
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # not trained at all
    assert out.check == first
    ran = adapt_and_refine(net, x_c, missing, spacing, replace(opts, skip_margin=margin + 0.1, stop_every=0),
                           progress=lambda s, d, t: seen.append(s))
    assert not ran.skipped and ran.tuned_steps == 10 and "adapt" in seen


def test_the_check_margin_is_in_db_over_the_best_interpolation():
    result = Check({"linear": 0.2, "cubic": 0.1, "pretrained": 0.05, "blend": 0.05})
    assert result.margin_db(PRETRAINED) == pytest.approx(20 * np.log10(2.0))
    assert Check({"linear": 0.1, "pretrained": 0.2}).margin_db(PRETRAINED) < 0
