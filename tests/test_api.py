"""The public API: the README's example runs, names are lazy, options check themselves, results hold
posterior samples, and a progress callback can cancel."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ldm_med
from ldm_med.data.phantoms import ct_body

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path, monkeypatch):
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    full = ldm_med.load_volume(tmp_path / "full.nii.gz")
    source = ldm_med.load_volume(ROOT / "sample_data" / "ct_gap_dicom")
    assert full.shape == source.shape
    acquired = source.acquired
    np.testing.assert_array_equal(np.moveaxis(full.data, 2, 0)[acquired],
                                  np.moveaxis(source.data, 2, 0)[acquired])
    std = ldm_med.load_volume(tmp_path / "std.nii.gz").data
    assert np.moveaxis(std, 2, 0)[~acquired].max() > 0 and np.moveaxis(std, 2, 0)[acquired].max() == 0


def test_import_is_lazy_and_torch_free():
    code = ("import sys, ldm_med; ldm_med.ReconstructOptions; ldm_med.load_volume; ldm_med.Progress; "
            "print('torch' in sys.modules, 'monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["False", "False"]
    assert set(ldm_med.__all__) <= set(dir(ldm_med))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ldm_med.nope  # noqa: B018


@pytest.mark.parametrize("changes, fragment", [
    ({"method": "nearest"}, "unknown method 'nearest'"),
    ({"refine": "maybe"}, "unknown refine mode"),
    ({"steps": 0}, "steps (--steps) must be an integer >= 1"),
    ({"samples": 1.5}, "samples (--samples) must be an integer >= 1"),
    ({"adapt_steps": -1}, "adapt_steps (--adapt-steps) must be an integer >= 0"),
    ({"sampler": "magic"}, "unknown sampler 'magic'"),
    ({"overlap": 1.0}, "overlap must be in [0, 1)"),
    ({"skip_margin": -1.0}, "skip_margin must be >= 0 dB"),
    ({"skip_margin": float("nan")}, "skip_margin must be >= 0 dB"),
])
def test_options_check_themselves(changes, fragment):
    with pytest.raises(ldm_med.InputError) as err:
        ldm_med.ReconstructOptions(**changes)
    assert fragment in str(err.value)


def test_sampler_names_match_the_registry():
    from ldm_med.diffusion.samplers import SAMPLERS

    assert set(ldm_med.SAMPLER_NAMES) == set(SAMPLERS)
    assert ldm_med.ReconstructOptions().sampler in ldm_med.SAMPLER_NAMES


def test_making_options_does_not_import_torch():
    code = ("import sys, ldm_med; ldm_med.ReconstructOptions(samples=4, sampler='ddim'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["False"]


def test_load_volume_axis_and_parse_missing(tmp_path):
    vol = ct_body((24, 20, 12), (1.0, 1.0, 2.0), seed=1)
    path = ldm_med.save_volume(vol, tmp_path / "ct.nii.gz")
    assert ldm_med.load_volume(path).slice_axis == 2
    along0 = ldm_med.load_volume(path, axis=0)
    assert along0.slice_axis == 0 and along0.n_slices == 24
    mask = ldm_med.parse_missing("keep-every:4", along0)
    assert mask.shape == (24,) and np.flatnonzero(~mask).tolist() == [0, 4, 8, 12, 16, 20]
    with pytest.raises(ldm_med.InputError, match="slice axis must be 0, 1 or 2"):
        ldm_med.load_volume(path, axis=3)


def test_samples_are_centred_and_keep_acquired_slices():
    vol = ct_body((32, 32, 12), (1.0, 1.0, 2.5), seed=4)
    missing = ldm_med.parse_missing("keep-every:3", vol)
    opts = ldm_med.ReconstructOptions(refine="pretrained", samples=3, steps=1, device="cpu")
    result = ldm_med.reconstruct(vol, missing, opts)
    samples = result.samples
    assert samples.shape == (3, *vol.shape)
    acquired = np.moveaxis(vol.data, 2, 0)[~missing]
    for s in samples:
        np.testing.assert_array_equal(np.moveaxis(s, 2, 0)[~missing], acquired)
    # the samples are centred on the returned estimate, and their spread is the uncertainty map
    np.testing.assert_allclose(samples.mean(axis=0), result.volume.data, atol=1e-2)
    np.testing.assert_allclose(samples.std(axis=0), result.uncertainty, atol=1e-3)
    assert np.moveaxis(result.uncertainty, 2, 0)[missing].mean() > 0


def test_progress_can_cancel():
    vol = ct_body((32, 32, 12), (1.0, 1.0, 2.5), seed=4)
    missing = ldm_med.parse_missing("keep-every:3", vol)
    seen = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append((stage, done, total))
        if stage == "adapt" and done == 3:
            raise ldm_med.Cancelled

    with pytest.raises(ldm_med.Cancelled):
        ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(adapt_steps=50, device="cpu",
                                                                     skip_margin=float("inf")),
                            progress=progress)
    assert seen[0] == ("check", 0, 1) and ("adapt", 0, 50) in seen and seen[-1] == ("adapt", 3, 50)


def test_ct_is_not_fine_tuned_where_the_shipped_refiner_wins_the_check():
    vol = ct_body((48, 48, 16), (1.0, 1.0, 2.5), seed=4)
    missing = np.zeros(16, bool)
    missing[[4, 9]] = True

    def run(**changes):
        stages = set()
        result = ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(adapt_steps=20, device="cpu",
                                                                              **changes),
                                     progress=lambda stage, done, total: stages.add(stage))
        return result.volume.metadata["reconstruction"], stages

    info, stages = run()
    rmse = info["check_rmse"]
    assert rmse["pretrained"] < min(rmse[m] for m in ("linear", "cubic", "bspline", "lanczos"))
    assert "ahead of the best interpolation" in info["adapt_skipped"] and info["adapt_steps_used"] == 0
    assert "adapt" not in stages
    info, stages = run(skip_margin=float("inf"))  # always fine-tune
    assert "adapt_skipped" not in info and "adapt" in stages
    info, stages = run(skip_margin=20.0)  # far more than the refiner's lead
    assert "adapt_skipped" not in info and "adapt" in stages


def test_fine_tuning_budget_grows_with_the_work():
    opts = ldm_med.ReconstructOptions()
    assert opts.adapt_budget(3 * 96 * 96) == 75  # the bundled DICOM series: 3 missing slices
    assert opts.adapt_budget(10 * 96 * 96) == 230  # one step per 400 missing voxels
    assert opts.adapt_budget(1000) == 75  # at least 75
    assert opts.adapt_budget(48 * 128 * 128) == 300  # at most adapt_steps
    assert ldm_med.ReconstructOptions(adapt_steps=20).adapt_budget(10**6) == 20
    assert ldm_med.ReconstructOptions(refine="pretrained").adapt_budget(10**6) == 0
