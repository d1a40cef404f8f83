"""Intensity normalisation: exact inverse, fixed CT window, robust percentiles of acquired voxels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ldm_med.data import CT_WINDOW, IntensityMap, ct_body, intensity_map_for, mr_head
from ldm_med.errors import InputError
from ldm_med.volume import Volume

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(finite, st.floats(1e-3, 1e6), hnp.arrays(np.float64, st.integers(1, 50), elements=finite))
def test_inverse_is_exact_in_float64(lo, width, x):
    imap = IntensityMap(lo, lo + width)
    back = imap.inverse(imap.forward(x))
    assert np.allclose(back, x, rtol=1e-12, atol=1e-9 * (abs(lo) + width))


def test_maps_window_to_minus_one_one_and_keeps_dtype():
    imap = IntensityMap(-1000.0, 1000.0)
    x = np.array([-1000.0, 0.0, 1000.0, 3000.0], dtype=np.float32)
    y = imap.forward(x)
    assert y.dtype == np.float32
    assert np.allclose(y, [-1.0, 0.0, 1.0, 3.0])  # nothing is clipped
    t = torch.tensor(x)
    yt = imap.forward(t)
    assert yt.dtype == torch.float32 and torch.allclose(yt, torch.tensor(y))
    assert torch.allclose(imap.inverse(yt), t)
    t64 = torch.linspace(-2000, 4000, 101, dtype=torch.float64)
    assert torch.allclose(imap.inverse(imap.forward(t64)), t64, rtol=0, atol=1e-9)


def test_dict_round_trip_and_validation():
    imap = IntensityMap(2.5, 700.25)
    assert IntensityMap.from_dict(imap.to_dict()) == imap
    for lo, hi in [(1.0, 1.0), (2.0, 1.0), (float("nan"), 1.0), (0.0, float("inf"))]:
        with pytest.raises(ValueError):
            IntensityMap(lo, hi)
    with pytest.raises(InputError):
        IntensityMap.from_dict({"lo": 1.0})
    with pytest.raises(InputError):
        IntensityMap.from_dict({"lo": 1.0, "hi": 0.0})


def test_ct_gets_the_fixed_window_and_hu_stay_hu():
    vol = ct_body((40, 40, 10), seed=0)
    imap = intensity_map_for(vol)
    assert (imap.lo, imap.hi) == CT_WINDOW == (-1000.0, 1000.0)
    assert np.allclose(imap.inverse(imap.forward(vol.data.astype(np.float64))), vol.data, atol=1e-9)
    unlabelled = vol.with_data(vol.data, metadata={})
    assert intensity_map_for(unlabelled) == imap, "HU-valued data without a modality is CT"


def test_other_modalities_use_percentiles_of_acquired_finite_voxels():
    vol = mr_head((40, 40, 12), seed=0)
    imap = intensity_map_for(vol)
    lo, hi = np.percentile(vol.data, [0.5, 99.5])
    assert np.isclose(imap.lo, lo) and np.isclose(imap.hi, hi)
    data = vol.data.copy()
    data[:, :, 3] = 1e9  # a garbage slice that is marked missing must not move the window
    data[0, 0, 5] = np.nan
    acquired = np.ones(12, bool)
    acquired[3] = False
    spoiled = vol.with_data(data, acquired=acquired)
    imap2 = intensity_map_for(spoiled)
    keep = np.delete(vol.data, 3, axis=2)
    assert np.isclose(imap2.hi, np.percentile(keep[np.isfinite(keep)], 99.5), rtol=1e-3)
    assert imap2.hi < 1e4


def test_constant_and_empty_volumes():
    imap = intensity_map_for(Volume(np.full((4, 4, 3), 7.0), metadata={"modality": "MR"}))
    assert imap.hi > imap.lo and imap.lo <= 7.0 <= imap.hi
    with pytest.raises(InputError):
        intensity_map_for(Volume(np.full((4, 4, 3), np.nan)))
    none_acquired = Volume(np.ones((4, 4, 3)), acquired=np.zeros(3, bool))
    with pytest.raises(InputError):
        intensity_map_for(none_acquired)
