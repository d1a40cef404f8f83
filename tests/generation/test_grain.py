"""The decoder grain: a spectrum measured on round-trip residuals and noise drawn with it."""
from __future__ import annotations

import numpy as np
import pytest

from ldm_med.checkpoint import load_model
from ldm_med.generation.grain import (
    GRAIN_BINS,
    debias,
    decoder_bias,
    grain,
    grain_envelope,
    grain_profile,
    modulate,
)
from ldm_med.generation.quality import radial_power


def _coloured(shape, rng):
    """Noise with most of its power at low frequencies (a smoothed field plus a little white noise)."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 2.0, 2.0))
    return 3 * smooth + 0.1 * rng.standard_normal(shape)


def test_grain_reproduces_the_power_spectrum_it_was_measured_on():
    rng = np.random.default_rng(0)
    residuals = _coloured((16, 64, 64), rng)
    profile = grain_profile(residuals)
    assert len(profile) == GRAIN_BINS and profile[1] > 5 * profile[-1]  # not white
    drawn = grain((16, 64, 64), profile, np.random.default_rng(1))
    want = np.mean([radial_power(r - r.mean()) for r in residuals], axis=0)
    got = np.mean([radial_power(d) for d in drawn], axis=0)
    np.testing.assert_allclose(got[1:], want[1:], atol=0.15)  # log10 power, every band but the DC one
    assert drawn.dtype == np.float32 and abs(float(drawn.mean())) < 1e-3
    white = grain((8, 64, 64), grain_profile(rng.standard_normal((8, 64, 64))), np.random.default_rng(2))
    assert float(white.std()) == pytest.approx(1.0, abs=0.05)  # white noise keeps its variance


def test_grain_works_at_any_size_and_is_seeded():
    profile = grain_profile(_coloured((4, 32, 32), np.random.default_rng(0)))
    a = grain((40, 24), profile, np.random.default_rng(5))
    assert a.shape == (40, 24)
    np.testing.assert_array_equal(a, grain((40, 24), profile, np.random.default_rng(5)))


def test_the_envelope_puts_the_grain_where_the_residual_is():
    rng = np.random.default_rng(0)
    decoded = np.tile(np.linspace(-1.0, 1.0, 64), (8, 64, 1))  # planes of a horizontal ramp
    amplitude = np.where(decoded < 0, 0.05, 0.5)                  # quiet background, noisy object
    envelope = grain_envelope(decoded, amplitude * rng.standard_normal(decoded.shape))
    values, ratios = np.asarray(envelope).T
    assert np.all(np.diff(values) > 0)
    assert np.mean(ratios**2) == pytest.approx(1.0, rel=0.05)     # the spectrum's power is kept
    noise = modulate(rng.standard_normal(decoded.shape), decoded, envelope)
    low, high = noise[decoded < -0.2].std(), noise[decoded > 0.2].std()
    assert high / low == pytest.approx(10.0, rel=0.15)
    assert noise.dtype == np.float32


def test_the_bias_correction_moves_a_decoded_level_to_its_true_mean():
    rng = np.random.default_rng(0)
    truth = np.full((4, 32, 32), -0.73)
    truth[3] = 0.6                                                 # background and object levels
    decoded = np.where(truth < 0, -0.92, 0.6) + 0.02 * rng.standard_normal(truth.shape)
    fixed = debias(decoded, decoder_bias(decoded, truth))
    assert abs(float(fixed[truth < 0].mean()) + 0.73) < 0.01      # the background was 0.19 too low
    assert abs(float(fixed[truth > 0].mean()) - 0.6) < 0.02
    assert fixed.dtype == np.float32


def test_the_bias_correction_never_stretches_the_decoded_range():
    rng = np.random.default_rng(1)
    decoded = rng.uniform(-1.0, 1.0, (4, 32, 32))
    truth = 3.0 * decoded                                          # asks for a threefold stretch
    bias = decoder_bias(decoded, truth)
    values, offsets = np.asarray(bias).T
    corrected = values + offsets
    assert np.all(np.diff(corrected) >= -1e-9)                     # monotone
    assert np.all(np.diff(corrected) <= np.diff(values) + 1e-4)    # slope at most one
    flat = decoder_bias(decoded, np.full_like(decoded, 0.25))      # asks for one level
    fixed = debias(decoded, flat)
    assert float(fixed.std()) < 0.05 and abs(float(fixed.mean()) - 0.25) < 0.01


def test_trained_models_record_the_grain_per_class(tiny_generator):
    classes = load_model(tiny_generator).extra["classes"]
    for info in classes.values():
        assert len(info["grain"]) == GRAIN_BINS and min(info["grain"]) >= 0 and info["residual_std"] > 0
        assert len(info["grain_envelope"]) >= 2 and all(r >= 0 for _, r in info["grain_envelope"])
        assert len(info["decoder_bias"]) >= 2


def test_the_shipped_generators_carry_grain_profiles():
    from ldm_med.generation.model import DEFAULT_GENERATORS

    for path in DEFAULT_GENERATORS.values():
        for name, info in load_model(path).extra["classes"].items():
            assert len(info.get("grain", [])) == GRAIN_BINS, f"{path.name}: {name} has no grain profile"
            assert info.get("grain_envelope"), f"{path.name}: {name} has no grain envelope"
            assert info.get("decoder_bias"), f"{path.name}: {name} has no decoder bias"


def test_regrain_adds_the_profiles_to_an_older_model_and_keeps_its_weights(tiny_generator):
    import torch

    from ldm_med.checkpoint import save_model
    from ldm_med.train.regrain import add_profiles

    src = load_model(tiny_generator)
    old = dict(src.extra)
    old["classes"] = {k: {**v, "grain": [], "grain_envelope": [], "decoder_bias": []}  # as made before
                      for k, v in src.extra["classes"].items()}
    here = tiny_generator.parent  # beside the original: its autoencoder reference stays valid
    older = save_model(here / "older.safetensors", src.model, kind=src.kind, config=src.config, extra=old)
    out = load_model(add_profiles(str(older), str(here / "regrained.safetensors"), half=False))
    assert all(len(v["grain"]) == GRAIN_BINS and v["grain_envelope"] and v["decoder_bias"]
               for v in out.extra["classes"].values())
    before, after = src.model.state_dict(), out.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
