"""Training data for ``task: generation`` from whole samples: generation presets and folders of files.

Each sample is a whole 2D image ``(H, W)`` or volume ``(D, H, W)`` (slice axis first) of the size
``data.crop``, in the model's about-[-1, 1] range, with a class label and its attributes (physical units,
NaN where a sample lacks one). Preset samples are drawn by the preset's generator and their attribute is
*measured* on the sample (``Preset.measure``), so the model is conditioned on the same quantity the
benchmark checks. Folder samples are resized to the crop, normalised per file (``intensity_map_for``) and
take their attributes from ``attributes.csv``.

Batches are pure functions of ``(seed, stream, step, rank)``, like :mod:`ldm_med.train.data`.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ldm_med.config import DataConfig, Source
from ldm_med.errors import InputError
from ldm_med.train.data import SPLIT, TRAIN, VALIDATION, Batch, step_rng

ATTRIBUTES_CSV = "attributes.csv"


@dataclass
class SampleRef:
    """A sample not loaded yet: ``load() -> (array in model range, {attribute: value})``."""

    name: str
    label: str
    load: Callable[[], tuple[np.ndarray, dict[str, float]]]


@dataclass(frozen=True)
class ClassInfo:
    """What generation needs to know about one class: the output stretch, geometry and format."""

    stretch: dict
    spacing: tuple[float, ...]
    modality: str
    natural_format: str
    spatial_unit: str
    preset: str | None = None
    residual_std: float = 0.0   # the autoencoder's round-trip error on this class (model range)
    grain: tuple[float, ...] = ()  # its radial amplitude spectrum (ldm_med.generation.grain)
    grain_envelope: tuple[tuple[float, float], ...] = ()  # its rms over the decoded intensity
    decoder_bias: tuple[tuple[float, float], ...] = ()  # the decoder's mean error over that intensity

    def to_dict(self) -> dict:
        return {"stretch": self.stretch, "spacing": list(self.spacing), "modality": self.modality,
                "natural_format": self.natural_format, "spatial_unit": self.spatial_unit,
                "preset": self.preset, "residual_std": self.residual_std, "grain": list(self.grain),
                "grain_envelope": [list(p) for p in self.grain_envelope],
                "decoder_bias": [list(p) for p in self.decoder_bias]}


# -- presets ---------------------------------------------------------------------------------------
def preset_sample(name: str, seed: int, crop: tuple[int, ...]) -> tuple[np.ndarray, dict[str, float]]:
    from ldm_med.data.presets import get_preset

    preset = get_preset(name)
    dims = len(crop)
    size = crop if dims == 2 else (crop[1], crop[2], crop[0])  # (X, Y, Z) with Z the slice axis
    vol = preset.sample(seed, dims, size)
    data = vol.data[:, :, 0] if dims == 2 else np.moveaxis(vol.data, 2, 0)
    return preset.stretch.forward(data), {preset.attribute.name: preset.measure(vol.data if dims == 3
                                                                               else data)}


# Training samples per preset class whose measured attribute gives the class's trained range and
# distribution; below RANGE_MIN_SAMPLES (a test recipe) the declared range stands and nothing is drawn.
RANGE_SAMPLES, RANGE_MIN_SAMPLES = 100, 20
# Levels of the recorded attribute distribution (``attribute_quantiles``): generation draws an attribute
# the user does not give by inverting this quantile function at a seeded uniform value.
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 21)


def preset_attribute_records(sources: Sequence[Source], crop: Sequence[int],
                             n: int = RANGE_SAMPLES) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per preset class, what its first ``n`` training samples (the source's first seeds), measured as
    training measures them, say about its attribute:

    * ``attribute_ranges``: ``{attribute: [low, high]}``, the part of the preset's declared range they
      cover. A declared range can be wider than what one size of sample holds: the 3D astronomical cubes
      hold 3-26 sources where the range, the 2D sky images', goes to 60.
    * ``attribute_quantiles``: ``{attribute: [q(0), q(0.05), ..., q(1)]}`` of the values within that
      range (``QUANTILE_LEVELS``): their distribution, which generation draws from where a sample's
      attribute is not requested.

    Classes with fewer than ``RANGE_MIN_SAMPLES`` samples, or whose values do not span the range, are
    left out."""
    from ldm_med.data.presets import get_preset
    from ldm_med.generation.quality import covered_range

    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for src in sources:
        if src.preset is None or src.class_name in out or min(n, src.count) < RANGE_MIN_SAMPLES:
            continue
        attr = get_preset(src.preset).attribute
        values = [preset_sample(src.preset, seed, tuple(crop))[1][attr.name]
                  for seed in range(src.seed, src.seed + min(n, src.count))]
        try:
            low, high = covered_range(values, attr.low, attr.high)
        except ValueError:  # all alike, or all outside the declared range
            continue
        inside = np.clip(np.asarray(values, np.float64), low, high)
        out[src.class_name] = {  # unrounded: a sweep to the end is not clamped
            "attribute_ranges": {attr.name: [low, high]},
            "attribute_quantiles": {attr.name: np.quantile(inside, QUANTILE_LEVELS).tolist()}}
    return out


def preset_ranges(sources: Sequence[Source], crop: Sequence[int],
                  n: int = RANGE_SAMPLES) -> dict[str, dict[str, list[float]]]:
    """Per preset class, ``{attribute: [low, high]}``: the ``attribute_ranges`` of
    ``preset_attribute_records``."""
    return {name: rec["attribute_ranges"] for name, rec in preset_attribute_records(sources, crop, n).items()}


def preset_refs(src: Source, crop: Sequence[int]) -> list[SampleRef]:
    return [SampleRef(f"{src.preset}:{seed}", src.class_name,
                      partial(preset_sample, src.preset, seed, tuple(crop)))
            for seed in range(src.seed, src.seed + src.count)]


def preset_class_info(name: str, dims: int) -> ClassInfo:
    from ldm_med.data.presets import get_preset

    p = get_preset(name)
    return ClassInfo(p.stretch.to_dict(), p.spacing[dims], p.modality, p.natural_format, p.spatial_unit, name)


# -- folders ---------------------------------------------------------------------------------------
def folder_files(folder: str | Path) -> dict[str, list[Path]]:
    """``{class name: files}``: one class per subfolder (the folder itself when it has none)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: training folder not found")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = {s.name: _data_files(s) for s in subs} if subs else {root.name: _data_files(root)}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise InputError(f"{root}: no image or volume files in the training folder")
    return groups


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and p.name != ATTRIBUTES_CSV and (p.is_file() or p.is_dir()))


def read_attributes(folder: str | Path) -> dict[str, dict[str, float]]:
    """``{relative file path: {attribute: value}}`` from the folder's ``attributes.csv`` ({} without one)."""
    path = Path(folder) / ATTRIBUTES_CSV
    if not path.is_file():
        return {}
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows, start=2):
        if "file" not in row:
            raise InputError(f"{path}: needs a 'file' column, then one column per attribute")
        try:
            out[row["file"]] = {k: float(v) for k, v in row.items() if k != "file" and v not in ("", None)}
        except ValueError as err:
            raise InputError(f"{path}: line {i}: {err}") from None
    return out


def _folder_sample(path: Path, crop: tuple[int, ...], attrs: dict[str, float]):
    from scipy import ndimage

    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.io import load_volume

    vol = load_volume(path)
    data = np.moveaxis(np.asarray(vol.data, dtype=np.float32), vol.slice_axis, 0)
    data = data[0] if len(crop) == 2 else data
    if data.ndim != len(crop):
        raise InputError(f"{path}: a {data.ndim}D file in a {len(crop)}D training folder")
    zoom = [c / s for c, s in zip(crop, data.shape)]
    if zoom != [1.0] * len(zoom):
        data = ndimage.zoom(data, zoom, order=1, grid_mode=True, mode="nearest")
    return intensity_map_for(vol).forward(data).astype(np.float32), dict(attrs)


def folder_refs(src: Source, crop: Sequence[int]) -> list[SampleRef]:
    attrs = read_attributes(src.folder)
    root = Path(src.folder)
    refs = []
    for label, files in folder_files(root).items():
        for f in files:
            rel = f.relative_to(root).as_posix()
            refs.append(SampleRef(rel, label, partial(_folder_sample, f, tuple(crop), attrs.get(rel, {}))))
    return refs


def folder_class_info(src: Source, dims: int) -> dict[str, ClassInfo]:
    """Per class of a folder: the median file geometry and intensity range (the output stretch)."""
    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.io import load_volume

    info = {}
    for label, files in folder_files(src.folder).items():
        vols = [load_volume(f) for f in files[:16]]
        ndims = {2 if v.data.shape[v.slice_axis] == 1 else 3 for v in vols}
        if ndims != {dims}:
            raise InputError(f"{src.folder}/{label}: files of {sorted(ndims)} dimensions for a {dims}D model "
                             "(one dimension per training folder)")
        maps = [intensity_map_for(v) for v in vols]
        stretch = {"kind": "linear", "lo": float(np.median([m.lo for m in maps])),
                   "hi": float(np.median([m.hi for m in maps])), "scale": 1.0}
        spacing = tuple(float(s) for s in np.median([v.spacing for v in vols], axis=0))[:dims]
        info[label] = ClassInfo(stretch, spacing, str(vols[0].metadata.get("modality", "") or "OT"),
                                "nifti", "mm")
    return info


def source_refs(sources: Sequence[Source], crop: Sequence[int]) -> list[SampleRef]:
    refs: list[SampleRef] = []
    for src in sources:
        refs += preset_refs(src, crop) if src.preset is not None else folder_refs(src, crop)
    return refs


def class_infos(sources: Sequence[Source], dims: int) -> dict[str, ClassInfo]:
    out: dict[str, ClassInfo] = {}
    for src in sources:
        if src.preset is not None:
            out.setdefault(src.class_name, preset_class_info(src.preset, dims))
        else:
            for k, v in folder_class_info(src, dims).items():
                out.setdefault(k, v)
    return out


def attribute_specs(sources: Sequence[Source], crop: Sequence[int]) -> dict[str, dict]:
    """``{name: {unit, low, high, description}}`` of every attribute the sources carry: a preset's own
    range, or the min and max a folder's ``attributes.csv`` gives."""
    from ldm_med.data.presets import get_preset

    specs: dict[str, dict] = {}
    for src in sources:
        if src.preset is not None:
            a = get_preset(src.preset).attribute
            specs.setdefault(a.name, a.to_dict())
            continue
        values: dict[str, list[float]] = {}
        for row in read_attributes(src.folder).values():
            for k, v in row.items():
                values.setdefault(k, []).append(v)
        for k, v in values.items():
            lo, hi = float(min(v)), float(max(v))
            specs.setdefault(k, {"name": k, "unit": "", "low": lo, "high": hi if hi > lo else lo + 1.0,
                                 "description": f"from {Path(src.folder) / ATTRIBUTES_CSV}"})
    return specs


# -- batches ---------------------------------------------------------------------------------------
class SampleStore:
    """Samples of a list of refs, loaded on first use and cached; attributes as a normalised matrix."""

    def __init__(self, refs: Sequence[SampleRef], labels: Sequence[str], attributes: dict[str, dict],
                 cache: bool = True) -> None:
        self.refs, self.cache = list(refs), cache
        names = list(labels)
        self.label_index = [names.index(r.label) if r.label in names else 0 for r in self.refs]
        self.attributes = attributes
        self._items: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(array, normalised attribute vector with NaN where absent)``."""
        if i in self._items:
            return self._items[i]
        ref = self.refs[i]
        try:
            arr, attrs = ref.load()
        except InputError as err:
            raise InputError(f"training sample {ref.name}: {err}") from None
        vec = np.full(len(self.attributes), np.nan, dtype=np.float32)
        for k, (name, spec) in enumerate(self.attributes.items()):
            if name in attrs:
                vec[k] = 2.0 * (attrs[name] - spec["low"]) / (spec["high"] - spec["low"]) - 1.0
        item = (np.ascontiguousarray(arr, dtype=np.float32), vec)
        if self.cache:
            self._items[i] = item
        return item


class GenerationData:
    """The batches of one generation run on one rank (see the module docstring)."""

    def __init__(self, cfg: DataConfig, *, labels: Sequence[str], attributes: dict[str, dict],
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.cfg, self.seed, self.rank = cfg, seed, rank
        refs = source_refs(cfg.sources, cfg.crop)
        val = source_refs(cfg.validation, cfg.crop) if cfg.validation else []
        if not val and cfg.val_fraction > 0 and len(refs) > 1:
            order = step_rng(seed, SPLIT, 0).permutation(len(refs))
            n_val = max(1, int(round(cfg.val_fraction * len(refs))))
            val = [refs[i] for i in sorted(order[:n_val])]
            refs = [refs[i] for i in sorted(order[n_val:])]
        shard = refs[rank::world_size] if len(refs) >= world_size else refs
        self.train = SampleStore(shard, labels, attributes, cfg.cache)
        self.val = SampleStore(val, labels, attributes, cfg.cache)
        self.n_train_total = len(refs)

    def batch(self, step: int, stream: int = TRAIN, store: SampleStore | None = None,
              rank: int | None = None) -> Batch:
        if stream == TRAIN and self.cfg.fixed_batch:
            step = 0
        rng = step_rng(self.seed, stream, step, self.rank if rank is None else rank)
        store = store or self.train
        picks = [int(rng.integers(len(store))) for _ in range(self.cfg.batch_size)]
        xs, attrs = zip(*(store[i] for i in picks))
        return Batch(torch.from_numpy(np.stack(xs)[:, None].copy()),
                     torch.tensor([store.label_index[i] for i in picks], dtype=torch.long),
                     attrs=torch.from_numpy(np.stack(attrs)), keys=tuple(store.refs[i].name for i in picks))

    def validation_batches(self) -> list[Batch]:
        if not len(self.val):
            return []
        return [self.batch(i, VALIDATION, self.val, rank=0) for i in range(self.cfg.val_batches)]
