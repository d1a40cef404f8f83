"""Real volumes shipped inside installed packages: they load, and the split is fixed and disjoint."""
from __future__ import annotations

import numpy as np
import pytest

from ldm_med.data import real_volumes
from ldm_med.data.real import _CANDIDATES
from ldm_med.errors import InputError
from ldm_med.volume import Volume

ALL = real_volumes(min_slices=0, min_inplane=0)
pytestmark = pytest.mark.skipif(not ALL, reason="nibabel's test data are not installed")


def test_names_unique_and_splits_disjoint():
    names = [rv.name for rv in ALL]
    assert len(names) == len(set(names))
    train = {rv.name for rv in real_volumes("train", min_slices=0, min_inplane=0)}
    evals = {rv.name for rv in real_volumes("eval", min_slices=0, min_inplane=0)}
    assert train.isdisjoint(evals) and train | evals == set(names)
    # frames of one scan never straddle the split
    by_file = {}
    for name, fname, *_ in _CANDIDATES:
        by_file.setdefault(fname, set()).add(name)
    for group in by_file.values():
        assert group <= train or group <= evals


def test_default_limits_and_eval_split():
    default = real_volumes()
    assert all(rv.n_slices >= 16 and min(rv.inplane) >= 32 for rv in default)
    assert [rv.name for rv in real_volumes("eval")] == ["nibabel_epi_t0", "nibabel_epi_t1"]
    assert [rv.name for rv in real_volumes("train")] == ["afni_tlrc", "nibabel_anatomical"]
    assert real_volumes("train", min_inplane=48) == []  # only the EPI reaches 48x48 in-plane


@pytest.mark.parametrize("rv", ALL, ids=lambda rv: rv.name)
def test_loaders_return_proper_volumes(rv):
    vol = rv.loader()
    assert isinstance(vol, Volume)
    assert vol.shape == rv.shape and vol.data.dtype == np.float32
    assert vol.slice_axis == rv.slice_axis
    assert vol.metadata["modality"] == rv.modality
    assert np.isfinite(vol.data).all() and vol.data.std() > 0
    assert all(s > 0.5 for s in vol.spacing)


def test_unknown_split_is_an_input_error():
    with pytest.raises(InputError, match="train, eval"):
        real_volumes("test")
