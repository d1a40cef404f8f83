"""Training data: recipe sources -> lazily loaded, normalised volumes -> seeded crops.

Every batch is a pure function of ``(seed, stream, step, rank)``: the volume picks, crop corners, slice
axes and training masks are drawn from ``numpy.random.default_rng([seed, stream, step, rank])``. There is
no sampler state to save, so ``--resume`` continues exactly where an uninterrupted run would be, and a
batch can be recomputed at any time (``fixed_batch`` simply always uses step 0).

Volumes are sharded across ranks with ``monai.data.partition_dataset`` (each rank loads only its own
share); held-out volumes come from ``data.validation`` or ``data.val_fraction``. Each volume is
normalised with ``intensity_map_for`` and kept with its slice axis first, ``(Z, A, B)``. Crops smaller
than the volume are cut at random corners; volumes smaller than the crop are edge-padded (centred).
"""
from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from ldm_med.config import DataConfig, Source
from ldm_med.errors import InputError
from ldm_med.volume import Volume

# Independent random streams of one run.
TRAIN, VALIDATION, LATENT_SCALE, RESIDUAL_SCALE, SAMPLES, SPLIT = range(6)


@dataclass
class VolumeRef:
    """A volume not loaded yet: a name for messages, a class name, and how to load it."""

    name: str
    label: str
    load: Callable[[], Volume]


@dataclass
class Batch:
    """One batch. ``x``: ``(B, 1, H, W)`` slices or ``(B, 1, D, H, W)`` slabs (slice axis = dim 2),
    normalised to about [-1, 1]; ``labels``: ``(B,)`` class indices; ``missing``: ``(B, D)`` bool
    training masks (slabs only, True = missing); ``attrs``: ``(B, K)`` normalised attributes, NaN where
    a sample has none, and ``keys`` the samples' names (generation from whole samples,
    :mod:`ldm_med.train.gendata`: a frozen autoencoder's latents can be cached by name)."""

    x: Tensor
    labels: Tensor
    missing: Tensor | None = None
    attrs: Tensor | None = None
    keys: tuple[str, ...] | None = None

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device), self.labels.to(device),
                     None if self.missing is None else self.missing.to(device),
                     None if self.attrs is None else self.attrs.to(device), self.keys)


def step_rng(seed: int, stream: int, step: int, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, step, rank])


def expand_sources(sources: Sequence[Source]) -> list[VolumeRef]:
    """One ``VolumeRef`` per volume the sources describe (nothing is loaded)."""
    refs: list[VolumeRef] = []
    for src in sources:
        if src.generator is not None:
            from ldm_med.data import GENERATORS

            if src.generator not in GENERATORS:
                raise InputError(f"unknown generator {src.generator!r}; valid: {', '.join(GENERATORS)}")
            given = (("shape", src.shape), ("spacing", src.spacing))
            kwargs = {k: tuple(v) for k, v in given if v is not None}
            refs += [VolumeRef(f"{src.generator}:{seed}", src.class_name,
                               partial(GENERATORS[src.generator], seed=seed, **kwargs))
                     for seed in range(src.seed, src.seed + src.count)]
        elif src.real is not None:
            from ldm_med.data.real import real_volumes

            found = real_volumes(split=src.real)
            if not found:
                raise InputError(f"no real volumes in the {src.real!r} split "
                                 "(are nibabel and pydicom installed?)")
            refs += [VolumeRef(f"real:{rv.name}", src.class_name, rv.loader) for rv in found]
        else:
            refs += [VolumeRef(p, src.class_name, partial(_load_path, p)) for p in _expand_paths(src.paths)]
    return refs


def _expand_paths(patterns: Sequence[str]) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise InputError(f"data path {pattern!r} matches no file or folder")
        out += matches
    return out


def _load_path(path: str) -> Volume:
    from ldm_med.io import load_volume

    return load_volume(path)


def normalise(volume: Volume) -> np.ndarray:
    """``(Z, A, B)`` float32 volume in about [-1, 1], slice axis first.

    A volume with slices that were not acquired (a gap in a DICOM series) keeps only its longest run of
    acquired slices: the values stored in the others mean nothing.
    """
    from ldm_med.data.intensity import intensity_map_for

    data = intensity_map_for(volume).forward(volume.data)
    data = np.moveaxis(np.asarray(data, dtype=np.float32), volume.slice_axis, 0)
    if not volume.acquired.all():
        start, stop = longest_run(volume.acquired)
        if stop == start:
            raise InputError("no slice of the volume was acquired")
        data = data[start:stop]
    return np.ascontiguousarray(data)


def longest_run(flags: np.ndarray) -> tuple[int, int]:
    """``(start, stop)`` of the longest run of True in a bool vector (``(0, 0)`` when there is none)."""
    padded = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = edges[::2], edges[1::2]
    if not len(starts):
        return 0, 0
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


class VolumeStore:
    """Normalised volumes of a list of refs, loaded on first use and cached when ``cache``."""

    def __init__(self, refs: Sequence[VolumeRef], labels: Sequence[str] = (), cache: bool = True) -> None:
        self.refs = list(refs)
        self.cache = cache
        self._arrays: dict[int, np.ndarray] = {}
        names = list(labels)
        self.label_index = [names.index(r.label) if r.label in names else 0 for r in self.refs]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self._arrays:
            return self._arrays[i]
        ref = self.refs[i]
        try:
            arr = normalise(ref.load())
        except InputError as err:
            raise InputError(f"training volume {ref.name}: {err}") from None
        if self.cache:
            self._arrays[i] = arr
        return arr


def crop_or_pad(arr: np.ndarray, corner: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``arr[corner : corner + size]`` on every axis, edge-padded (centred) where ``arr`` is smaller."""
    window = arr[tuple(slice(c, c + s) for c, s in zip(corner, size))]
    pad = [((s - n) // 2, s - n - (s - n) // 2) for n, s in zip(window.shape, size)]
    return np.pad(window, pad, mode="edge") if any(p != (0, 0) for p in pad) else window


def random_corner(rng: np.random.Generator, shape: Sequence[int], size: Sequence[int]) -> list[int]:
    return [int(rng.integers(0, n - s + 1)) if n > s else 0 for n, s in zip(shape, size)]


def slice_batch(store: VolumeStore, rng: np.random.Generator, batch: int, crop: Sequence[int],
                other_axes: float = 0.0) -> Batch:
    """2D crops ``(B, 1, H, W)``, cut along the slice axis (or, with probability ``other_axes``, one of
    the two in-plane axes)."""
    xs, labels = [], []
    for _ in range(batch):
        i = int(rng.integers(len(store)))
        arr = store[i]
        axis = int(rng.integers(1, 3)) if other_axes > 0 and rng.random() < other_axes else 0
        plane = np.moveaxis(arr, axis, 0)
        k = int(rng.integers(plane.shape[0]))
        xs.append(crop_or_pad(plane[k], random_corner(rng, plane.shape[1:], crop), crop))
        labels.append(store.label_index[i])
    return Batch(torch.from_numpy(np.stack(xs)[:, None].copy()), torch.tensor(labels, dtype=torch.long))


def slab_batch(store: VolumeStore, rng: np.random.Generator, batch: int, crop: Sequence[int],
               masks: bool = False) -> Batch:
    """3D slabs ``(B, 1, D, H, W)`` with the slice axis first; with ``masks`` also ``sample_training_mask``
    masks ``(B, D)``."""
    xs, labels, missing = [], [], []
    for _ in range(batch):
        i = int(rng.integers(len(store)))
        arr = store[i]
        xs.append(crop_or_pad(arr, random_corner(rng, arr.shape, crop), crop))
        labels.append(store.label_index[i])
        if masks:
            from ldm_med.masks import sample_training_mask

            missing.append(np.asarray(sample_training_mask(crop[0], rng), dtype=bool))
    return Batch(torch.from_numpy(np.stack(xs)[:, None].copy()), torch.tensor(labels, dtype=torch.long),
                 torch.from_numpy(np.stack(missing)) if masks else None)


class TrainingData:
    """The batches of one run on one rank.

    Args:
        cfg: the recipe's ``data`` section.
        slabs: 3D slabs (diffusion) instead of 2D slices (autoencoder).
        masks: draw slice-inpainting training masks with each slab.
        labels: class names (for labels); sources with other names get index 0.
        seed, rank, world_size: randomness and sharding.
    """

    def __init__(self, cfg: DataConfig, *, slabs: bool, masks: bool = False, labels: Sequence[str] = (),
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        from monai.data import partition_dataset

        self.cfg, self.slabs, self.masks, self.seed, self.rank = cfg, slabs, masks, seed, rank
        train_refs = expand_sources(cfg.sources)
        val_refs = expand_sources(cfg.validation) if cfg.validation else []
        if not val_refs and cfg.val_fraction > 0:
            n_val = max(1, int(round(cfg.val_fraction * len(train_refs))))
            if n_val >= len(train_refs):
                raise InputError(f"data.val_fraction {cfg.val_fraction} leaves no training volume "
                                 f"out of {len(train_refs)}")
            order = step_rng(seed, SPLIT, 0).permutation(len(train_refs))
            val_refs = [train_refs[i] for i in sorted(order[:n_val])]
            train_refs = [train_refs[i] for i in sorted(order[n_val:])]
        if len(train_refs) >= world_size:
            shard = partition_dataset(train_refs, num_partitions=world_size, even_divisible=True)[rank]
        else:  # fewer volumes than processes: every rank crops from all of them (different crops)
            shard = train_refs
        self.train = VolumeStore(shard, labels, cfg.cache)
        self.val = VolumeStore(val_refs, labels, cfg.cache)
        self.n_train_total = len(train_refs)

    def batch(self, step: int, stream: int = TRAIN, store: VolumeStore | None = None,
              rank: int | None = None) -> Batch:
        """The batch of ``step`` in ``stream`` (step 0 always when ``fixed_batch``, for TRAIN)."""
        if stream == TRAIN and self.cfg.fixed_batch:
            step = 0
        rng = step_rng(self.seed, stream, step, self.rank if rank is None else rank)
        store = store or self.train
        if self.slabs:
            return slab_batch(store, rng, self.cfg.batch_size, self.cfg.crop, self.masks)
        return slice_batch(store, rng, self.cfg.batch_size, self.cfg.crop,
                           self.cfg.other_axes if stream == TRAIN else 0.0)

    def validation_batches(self) -> list[Batch]:
        """The fixed held-out batches (``[]`` without held-out volumes)."""
        if not len(self.val):
            return []
        return [self.batch(i, VALIDATION, self.val, rank=0) for i in range(self.cfg.val_batches)]
