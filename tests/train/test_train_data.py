"""Training data: seeded crops (a pure function of seed, stream, step, rank), padding, sharding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_med.config import DataConfig, Source
from ldm_med.errors import InputError
from ldm_med.train.data import TRAIN, VALIDATION, TrainingData, crop_or_pad, expand_sources

SHAPE = (24, 20, 10)


def _cfg(**kw) -> DataConfig:
    base = {"sources": (Source(generator="ct", count=3, seed=0, shape=SHAPE),
                        Source(generator="mr", count=2, seed=5, shape=SHAPE)),
            "crop": (16, 16), "batch_size": 3}
    return DataConfig(**{**base, **kw})


def test_slice_batches_are_reproducible_per_seed_step_and_rank():
    data = TrainingData(_cfg(), slabs=False, seed=1)
    a, b = data.batch(7), TrainingData(_cfg(), slabs=False, seed=1).batch(7)
    assert a.x.shape == (3, 1, 16, 16) and a.x.dtype == torch.float32
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, data.batch(8).x)
    assert not torch.equal(a.x, data.batch(7, rank=1).x)
    assert not torch.equal(a.x, TrainingData(_cfg(), slabs=False, seed=2).batch(7).x)
    assert float(a.x.abs().max()) < 3.0  # normalised with intensity_map_for


def test_fixed_batch_repeats_step_zero():
    data = TrainingData(_cfg(fixed_batch=True), slabs=False)
    assert torch.equal(data.batch(0).x, data.batch(5).x)


def test_slabs_with_masks_and_edge_padding():
    cfg = _cfg(crop=(16, 32, 16))  # 16 > 10 slices and 32 > 24 rows: padded
    data = TrainingData(cfg, slabs=True, masks=True)
    batch = data.batch(0)
    assert batch.x.shape == (3, 1, 16, 32, 16)
    assert batch.missing.shape == (3, 16) and batch.missing.dtype == torch.bool
    assert batch.missing.any(1).all() and ((~batch.missing).sum(1) >= 2).all()
    slab = batch.x[0, 0].numpy()
    # edge padding along the slice axis
    assert np.array_equal(slab[0], slab[2]) and np.array_equal(slab[-1], slab[-2])


def test_crop_or_pad():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = crop_or_pad(arr, [0, 1], (5, 2))
    assert out.shape == (5, 2)
    assert np.array_equal(out[1:4], arr[:, 1:3]) and np.array_equal(out[0], arr[0, 1:3])


def test_other_axes_gives_in_plane_cuts():
    data = TrainingData(_cfg(other_axes=1.0, crop=(24, 20)), slabs=False)
    x = data.batch(0).x
    # a cut along an in-plane axis has the 10 slices on one side, edge-padded to 24 or 20
    assert x.shape == (3, 1, 24, 20)
    assert any(torch.equal(x[i, 0, 0], x[i, 0, 1]) or torch.equal(x[i, 0, :, 0], x[i, 0, :, 1])
               for i in range(3))


def test_sharding_gives_each_rank_its_own_volumes():
    shards = [TrainingData(_cfg(), slabs=False, rank=r, world_size=2) for r in range(2)]
    names = [{ref.name for ref in s.train.refs} for s in shards]
    assert names[0] | names[1] == {ref.name for ref in expand_sources(_cfg().sources)}
    assert len(names[0]) == len(names[1]) == 3  # 5 volumes, padded to an even split


def test_validation_sources_and_fraction():
    held_out = (Source(generator="ct", count=1, seed=99, shape=SHAPE),)
    held = TrainingData(_cfg(validation=held_out, val_batches=2), slabs=False)
    batches = held.validation_batches()
    assert len(batches) == 2 and torch.equal(batches[0].x, held.validation_batches()[0].x)
    frac = TrainingData(_cfg(val_fraction=0.4), slabs=False, seed=3)
    train_names = {r.name for r in frac.train.refs}
    val_names = {r.name for r in frac.val.refs}
    assert len(val_names) == 2 and not train_names & val_names
    assert frac.batch(0, VALIDATION, frac.val).x.shape == (3, 1, 16, 16)
    assert TRAIN != VALIDATION


def test_bad_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown generator 'xray'"):
        expand_sources([Source(generator="xray")])
    with pytest.raises(InputError, match="matches no file"):
        expand_sources([Source(paths=(str(tmp_path / "*.nii.gz"),))])


def test_path_sources_load_lazily(tmp_path):
    import nibabel as nib

    vol = np.random.default_rng(0).normal(size=(20, 18, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "a.nii.gz"))
    cfg = DataConfig(sources=(Source(paths=(str(tmp_path / "*.nii.gz"),)),), crop=(16, 16), batch_size=2)
    data = TrainingData(cfg, slabs=False)
    assert data.train.refs[0].name.endswith("a.nii.gz") and not data.train._arrays
    assert data.batch(0).x.shape == (2, 1, 16, 16)


def test_volumes_with_unacquired_slices_keep_their_longest_acquired_run():
    from ldm_med.train.data import longest_run, normalise
    from ldm_med.volume import Volume

    assert longest_run(np.array([1, 1, 0, 1, 1, 1, 0], bool)) == (3, 6)
    assert longest_run(np.zeros(3, bool)) == (0, 0)
    data = np.random.default_rng(0).normal(size=(8, 9, 10)).astype(np.float32)
    acquired = np.ones(10, bool)
    acquired[[2, 7]] = False
    out = normalise(Volume(data, acquired=acquired))
    assert out.shape == (4, 8, 9)  # slices 3..6, slice axis first
