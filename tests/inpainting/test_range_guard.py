"""The range guard: missing voxels far above the range the refiners were trained on (bright sources in
spectral cubes) take the check's anchor instead of the blend (``adapt._blend``, ``RANGE_GUARD``)."""
from __future__ import annotations

import numpy as np
import pytest
from volumes import smooth_volume

from ldm_med import ReconstructOptions, Volume, reconstruct
from ldm_med.inpainting.adapt import _blend
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.inpainting.refine import AdaptOptions
from ldm_med.masks import keep_every


def test_voxels_above_the_guard_take_the_anchor_and_the_rest_keep_the_blend():
    x = smooth_volume((20, 16, 16))
    x[8:13, 4:8, 4:8] += 6.0  # a bright source across a gap
    missing = keep_every(20, 3)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    out = _blend({"linear": 1.0}, {}, x_c, missing, AdaptOptions(range_guard=1.5), "cpu", anchor="cubic")
    above = (x_c > 1.5) & missing[:, None, None]
    assert 0 < above.sum() < missing.sum() * 16 * 16
    np.testing.assert_array_equal(out[above], fill_missing(x, missing, 0, "cubic")[above])
    np.testing.assert_array_equal(out[~above], x_c[~above])  # the blend (here linear) and acquired slices


def test_without_an_anchor_or_with_the_guard_off_nothing_changes():
    x = smooth_volume((20, 16, 16)) * 5
    missing = keep_every(20, 3)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    for opts, anchor in [(AdaptOptions(range_guard=1.0), None), (AdaptOptions(), "cubic")]:
        out = _blend({"linear": 1.0}, {}, x_c, missing, opts, "cpu", anchor=anchor)
        np.testing.assert_array_equal(out, x_c)


@pytest.mark.parametrize("modality, guarded", [("ASTRO", True), ("MR", False)])
def test_the_pipeline_guards_spectral_cubes_only_and_says_so(modality, guarded):
    rng = np.random.default_rng(0)
    data = (rng.normal(100.0, 5.0, (24, 24, 16)) + 50 * smooth_volume((24, 24, 16))).astype(np.float32)
    data[10:13, 10:13, 5:10] += 5000.0  # a source far above the 99.5th percentile
    vol = Volume(data, np.eye(4), slice_axis=2, metadata={"modality": modality})
    missing = keep_every(16, 3)
    out = reconstruct(vol, missing, ReconstructOptions(adapt_steps=0, device="cpu"))
    info = out.volume.metadata["reconstruction"]
    assert ("range_guard" in info) == guarded
    if guarded:
        assert info["range_guard"]["voxels"] > 0 and info["range_guard"]["level"] == 1.0
    np.testing.assert_array_equal(out.volume.data[..., ~missing], data[..., ~missing])
