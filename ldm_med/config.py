"""Training recipes: YAML files loaded into typed, validated dataclasses.

A recipe is one YAML mapping. ``kind`` says what it trains (``autoencoder``, ``diffusion``,
``refiner`` or ``decoder``); every other top-level key is a section below. Unknown keys are errors that
name the file, the section and the valid keys, so a typo never silently falls back to a default. ``to_dict``
returns the *resolved* config (defaults filled in, presets expanded), which is what every checkpoint
embeds; ``from_dict`` of that dict gives back an equal object.

    kind: autoencoder
    model: {channels: [32, 64, 64], latent_channels: 4}      # ldm_med.nets.config.AutoencoderConfig
    data:
      sources:
        - {generator: ct, count: 64, seed: 1000, shape: [96, 96, 48]}
        - {real: train}
        - {paths: ["scans/*.nii.gz", "dicom/series1"]}
      validation: [{generator: ct, count: 4, seed: 9000, shape: [96, 96, 48]}]
      crop: [64, 64]
    train: {steps: 2000, seed: 0}
    optim: {lr: 2.0e-4}

Relative paths (``paths`` sources, ``autoencoder``) are looked up from the current directory first,
then from the recipe's own folder.
"""
from __future__ import annotations

import dataclasses
import glob
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ldm_med.errors import InputError
from ldm_med.nets.config import AutoencoderConfig, DenoiserConfig

KINDS = ("autoencoder", "diffusion", "refiner", "decoder")
TASKS = ("slice-inpainting", "generation")
SOURCE_KINDS = ("generator", "real", "paths", "preset", "folder")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


# -- sections --------------------------------------------------------------------------------------
@dataclass
class Source:
    """One data source; exactly one of ``generator``, ``real``, ``paths``, ``preset``, ``folder``.

    Attributes:
        generator: a key of ``ldm_med.data.GENERATORS`` (``ct``, ``mr``, ``molecule``, ``astro``);
            volumes use seeds ``seed, seed + 1, ..., seed + count - 1``.
        preset: ``task: generation`` only: a key of ``ldm_med.data.presets.PRESETS``; whole 2D or 3D
            samples of the size ``data.crop``, each with its measured attribute (seeds as above).
        folder: ``task: generation`` only: a folder of volumes or images in any readable format, one
            class per subfolder, attributes from ``attributes.csv`` in it (column ``file``, relative
            to the folder, then one column per attribute); resized to ``data.crop``.
        real: ``train`` or ``eval``: the real volumes shipped with the Python packages.
        paths: NIfTI files, DICOM folders or globs, loaded lazily with ``ldm_med.io.load_volume``.
        shape: generator volume shape ``(X, Y, Z)``; ``None``: the generator's default.
        spacing: generator voxel size in mm ``(X, Y, Z)``; ``None``: the generator's default.
        label: class name for ``task: generation`` with labels (default: the generator name, or
            ``real`` / ``files``).
    """

    generator: str | None = None
    count: int = 1
    seed: int = 0
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    real: str | None = None
    paths: tuple[str, ...] | None = None
    preset: str | None = None
    folder: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in SOURCE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise InputError(f"a data source needs exactly one of {', '.join(SOURCE_KINDS)}; "
                             f"got {given or 'none'}")
        if self.preset is not None:
            from ldm_med.data.presets import PRESETS

            if self.preset not in PRESETS:
                raise InputError(f"unknown preset {self.preset!r}; valid presets are {', '.join(PRESETS)}")
        if self.count < 1:
            raise InputError(f"data source count must be >= 1, got {self.count}")
        if self.real is not None and self.real not in ("train", "eval"):
            raise InputError(f"real: must be 'train' or 'eval', got {self.real!r}")
        if self.shape is not None and (len(self.shape) != 3 or min(self.shape) < 1):
            raise InputError(f"shape must be three positive sizes (X, Y, Z), got {list(self.shape)}")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise InputError(f"spacing must be three positive sizes in mm, got {list(self.spacing)}")

    @property
    def class_name(self) -> str:
        if self.label is not None:
            return self.label
        if self.generator is not None:
            return self.generator
        if self.preset is not None:
            return self.preset
        return "real" if self.real is not None else "files"

    @property
    def whole_samples(self) -> bool:
        """Whether the source yields whole samples (generation) rather than volumes to crop."""
        return self.preset is not None or self.folder is not None


@dataclass
class DataConfig:
    """What the model sees.

    Attributes:
        sources: training sources.
        validation: held-out sources (e.g. other generator seeds). Empty: ``val_fraction`` of the
            training volumes is held out (at least one when ``val_fraction > 0``).
        crop: autoencoder: ``(H, W)`` 2D slice crops; diffusion: ``(D, H, W)`` slabs with ``D`` along
            the slice axis. Volumes smaller than the crop are edge-padded.
        batch_size: per process (per GPU under torchrun).
        other_axes: autoencoder only: probability of cutting a slice along one of the two in-plane
            axes instead of the slice axis (augmentation).
        fixed_batch: every step sees the batch of step 0 (overfitting checks and tests).
        cache: keep normalised volumes in memory after their first use.
        val_batches: batches in the validation set.
        val_fraction: see ``validation``.
    """

    sources: tuple[Source, ...] = ()
    validation: tuple[Source, ...] = ()
    val_fraction: float = 0.0
    crop: tuple[int, ...] = (64, 64)
    batch_size: int = 8
    other_axes: float = 0.0
    fixed_batch: bool = False
    cache: bool = True
    val_batches: int = 4

    def __post_init__(self) -> None:
        if not self.sources:
            raise InputError("data.sources is empty: list at least one source")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.other_axes <= 1.0:
            raise InputError(f"data.other_axes is a probability in [0, 1], got {self.other_axes}")
        if self.batch_size < 1 or self.val_batches < 0:
            raise InputError("data.batch_size must be >= 1 and data.val_batches >= 0")
        if min(self.crop, default=0) < 1:
            raise InputError(f"data.crop must be positive sizes, got {list(self.crop)}")


@dataclass
class LoopConfig:
    """The ``train`` section: length, seed, precision and how often to log, validate, sample, save;
    ``init``: a model file of the same network to start from (fine-tuning: weights and EMA start there,
    the optimizer and the schedule start afresh)."""

    steps: int = 1000
    seed: int = 0
    precision: str = "auto"
    init: str | None = None
    log_every: int = 10
    val_every: int = 100
    sample_every: int = 250
    ckpt_every: int = 500

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"train.steps must be >= 1, got {self.steps}")
        if self.precision not in PRECISIONS:
            raise InputError(f"train.precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        for name in ("log_every", "val_every", "sample_every", "ckpt_every"):
            if getattr(self, name) < 0:
                raise InputError(f"train.{name} must be >= 0 (0 disables it)")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, then a constant or cosine learning rate."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    final_lr_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise InputError("optim: lr must be > 0, grad_clip >= 0 (0 disables) and warmup_steps >= 0")


@dataclass
class EMAConfig:
    """Exponential moving average of the weights (the exported model)."""

    decay: float = 0.999
    warmup: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise InputError(f"ema.decay must be in [0, 1), got {self.decay}")


@dataclass
class AutoencoderLossConfig:
    """L1 + ``kl_weight`` KL + ``adv_weight`` least-squares PatchGAN term after ``adv_warmup`` steps."""

    kl_weight: float = 1e-6
    adv_weight: float = 0.05
    adv_warmup: int = 500


@dataclass
class DiscriminatorConfig:
    """PatchGAN discriminator (``ldm_med.nets.build_discriminator``) and its own AdamW."""

    channels: int = 32
    num_layers: int = 3
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)


@dataclass
class DiffusionLossConfig:
    weighting: Literal["min-snr", "none"] = "min-snr"
    gamma: float = 5.0


@dataclass
class LabelConfig:
    """Class labels for ``task: generation``: the sources' ``class_name``s, in order of appearance
    (``names`` is filled in when the run starts: a ``folder`` source names its subfolders). ``dropout``
    also drops the attributes, together with the label: the unconditional model of classifier-free
    guidance."""

    enabled: bool = False
    dropout: float = 0.1
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"labels.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class SamplerConfig:
    """Sampler used for the sample grids written during training."""

    name: str = "dpm++2m"
    steps: int = 10


@dataclass
class AutoencoderRun:
    """A complete autoencoder recipe."""

    kind: Literal["autoencoder"] = "autoencoder"
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(sources=(Source(generator="ct"),)))
    train: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    latent_scale_batches: int = 8

    def __post_init__(self) -> None:
        if len(self.data.crop) != 2:
            raise InputError(f"data.crop for an autoencoder is (H, W), got {list(self.data.crop)}")
        if self.model.spatial_dims != 2:
            raise InputError("training recipes support 2D (slice-aligned) autoencoders: "
                             "set model.spatial_dims: 2")
        f = self.model.downsample
        if any(c % f for c in self.data.crop):
            raise InputError(f"data.crop {list(self.data.crop)} must be multiples of the autoencoder's "
                             f"downsampling factor {f}")


@dataclass
class DiffusionRun:
    """A complete latent-diffusion recipe (``task``: ``slice-inpainting`` or ``generation``)."""

    kind: Literal["diffusion"] = "diffusion"
    task: Literal["slice-inpainting", "generation"] = "slice-inpainting"
    autoencoder: str | None = None
    model: DenoiserConfig = field(default_factory=DenoiserConfig)
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sources=(Source(generator="ct"),), crop=(16, 64, 64)))
    train: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    sde: dict[str, Any] = field(default_factory=lambda: {"name": "vp-linear"})
    prediction: Literal["eps", "v", "x0"] = "v"
    loss: DiffusionLossConfig = field(default_factory=DiffusionLossConfig)
    residual_scale: float | None = None
    residual_scale_batches: int = 8
    # the anchor the model corrects; reconstruction uses ldm_med.inpainting.latent.ANCHOR
    interpolation: Literal["linear", "cubic"] = "linear"
    labels: LabelConfig = field(default_factory=LabelConfig)
    # task: generation: name -> {unit, low, high, description}, filled in when the run starts from the
    # presets (or a folder's attributes.csv); two conditioning channels each (value, present)
    attributes: dict[str, Any] = field(default_factory=dict)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        from ldm_med.diffusion.sde import VPSDE

        dims = self.model.spatial_dims
        if self.task == "generation" and len(self.data.crop) != dims:
            raise InputError(f"data.crop {list(self.data.crop)} must have model.spatial_dims = {dims} "
                             "sizes: (H, W) images for a 2D model, (D, H, W) for a 3D one")
        if self.task == "slice-inpainting" and (len(self.data.crop) != 3 or dims != 3):
            raise InputError(f"slice-inpainting needs (D, H, W) slabs and model.spatial_dims: 3, got crop "
                             f"{list(self.data.crop)} and spatial_dims {dims}")
        whole = [s.whole_samples for s in (*self.data.sources, *self.data.validation)]
        if any(whole) and (self.task != "generation" or not all(whole)):
            raise InputError("preset and folder sources are for task: generation, and are not mixed "
                             "with generator, real or paths sources")
        try:
            self.sde = VPSDE.from_dict(self.sde).to_dict()  # validates and resolves defaults
        except (TypeError, ValueError, OverflowError) as err:
            raise InputError(f"sde: {err}") from None
        if self.task == "slice-inpainting" and self.labels.enabled:
            raise InputError("labels are for task: generation only")
        if self.task == "slice-inpainting" and self.model.cond_channels != self.model.in_channels + 1:
            raise InputError(f"task: slice-inpainting needs model.cond_channels = in_channels + 1 = "
                             f"{self.model.in_channels + 1} (latent anchor + mask), "
                             f"got {self.model.cond_channels}")
        if self.task == "slice-inpainting" and self.data.crop[0] < 3:
            raise InputError(f"data.crop: slabs of {self.data.crop[0]} slices are too thin to hide some; "
                             "use at least 3 (16 is usual)")
        if self.residual_scale is not None and self.residual_scale <= 0:
            raise InputError(f"residual_scale must be > 0 (or null to estimate it), "
                             f"got {self.residual_scale}")

    def class_names(self) -> list[str]:
        """Label names in index order (``[]`` when labels are disabled)."""
        if not self.labels.enabled:
            return []
        if self.labels.names:
            return list(self.labels.names)
        return list(dict.fromkeys(s.class_name for s in self.data.sources))


@dataclass
class RefinerModel:
    """The ``model`` section of a refiner recipe (``ldm_med.nets.refiner.SliceGapRefiner``)."""

    channels: int = 32
    depth: int = 6

    def __post_init__(self) -> None:
        if self.channels < 1 or self.depth < 2:
            raise InputError(f"refiner model needs channels >= 1 and depth >= 2, "
                             f"got {self.channels}, {self.depth}")


@dataclass
class RefinerRun:
    """A slice-gap refiner recipe: pretrained on through-plane planes of the sources with random gap masks
    (``ldm_med.inpainting.refine``); reconstruction fine-tunes it on each scan. ``data.crop`` is the
    ``(A, L)`` plane crop, L along the slice axis; ``optim.lr`` is Adam's rate, constant or, with
    ``optim.schedule: cosine``, decayed to ``lr * optim.final_lr_fraction`` over the run; ``train.init``
    starts from the weights of a refiner file."""

    kind: Literal["refiner"] = "refiner"
    model: RefinerModel = field(default_factory=RefinerModel)
    data: DataConfig = field(default_factory=lambda: DataConfig(
        sources=(Source(generator="ct"),), crop=(48, 48), batch_size=16))
    train: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3))

    def __post_init__(self) -> None:
        if len(self.data.crop) != 2 or min(self.data.crop) < 4:
            raise InputError(f"data.crop for a refiner is (A, L) plane crops of at least 4, "
                             f"got {list(self.data.crop)}")


@dataclass
class DecoderRun:
    """A small slice decoder distilled from an autoencoder's own decoder (``ldm_med.train.decoder``); the
    uncertainty map decodes every posterior sample with it. ``autoencoder`` is the teacher (default: the
    shipped one); ``model`` the student's ``AutoencoderConfig`` (its latent channels and downsampling
    those of the teacher); ``data.crop`` the ``(H, W)`` pixel crop; ``optim`` Adam(W), cosine by default.
    """

    kind: Literal["decoder"] = "decoder"
    model: AutoencoderConfig = field(default_factory=lambda: AutoencoderConfig(
        channels=(8, 16, 32), norm_num_groups=8))
    autoencoder: str | None = None
    data: DataConfig = field(default_factory=lambda: DataConfig(
        sources=(Source(generator="ct"),), crop=(64, 64), batch_size=24))
    train: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=2e-3, schedule="cosine", final_lr_fraction=0.0))

    def __post_init__(self) -> None:
        f = self.model.downsample
        if self.model.spatial_dims != 2:
            raise InputError("decoder recipes distil 2D (slice) decoders: set model.spatial_dims: 2")
        if len(self.data.crop) != 2 or any(c % f or c < f for c in self.data.crop):
            raise InputError(f"data.crop for a decoder is (H, W), multiples of the downsampling factor "
                             f"{f}, got {list(self.data.crop)}")


RunConfig = AutoencoderRun | DiffusionRun | RefinerRun | DecoderRun
RUN_CLASSES: dict[str, type] = {"autoencoder": AutoencoderRun, "diffusion": DiffusionRun,
                                "refiner": RefinerRun, "decoder": DecoderRun}


# -- generic typed loading ---------------------------------------------------------------------------
def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert (lists -> tuples, int -> float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except InputError as err:
                errors.append(str(err))
        raise InputError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a valid "
                         f"{' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value not in args:
            raise InputError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise InputError(f"{where}: expected {len(args)} values, got {list(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if _is_config_class(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 (PyYAML) reads 2e-4, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise InputError(f"{where}: number too large ({len(str(value))} digits)") from None
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config annotation {tp!r} at {where} is not supported")  # a bug, not bad input


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming ``where`` (e.g. ``data.sources[1]``) in errors."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of keys, got {data!r}")
    if hasattr(cls, "from_dict") and cls not in RUN_CLASSES.values():  # network configs validate themselves
        try:
            return cls.from_dict(data)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        except (TypeError, ValueError, ArithmeticError) as err:  # e.g. norm_num_groups: 0 (modulo by zero)
            raise InputError(f"{where}: invalid network settings ({type(err).__name__}: {err})") from None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"valid keys: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except InputError as err:
        raise InputError(f"{where}: {err}" if where else str(err)) from None


def to_dict(obj: Any) -> Any:
    """Resolved plain-data form (lists, dicts, numbers, strings) of a config object."""
    if hasattr(obj, "to_dict") and not isinstance(obj, tuple(RUN_CLASSES.values())):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(data: dict[str, Any], kind: str | None = None, name: str = "config") -> RunConfig:
    """Build a run config from a plain dict (a parsed recipe, or the one embedded in a checkpoint).

    Args:
        data: the mapping; its ``kind`` key selects the class (``kind`` argument when absent).
        kind: expected kind; a recipe of another kind is an error.
        name: what to call the source in error messages (the file name).
    """
    if not isinstance(data, dict):
        raise InputError(f"{name}: a recipe is a YAML mapping of sections, got {type(data).__name__}")
    found = data.get("kind", kind)
    if not isinstance(found, str) or found not in RUN_CLASSES:
        raise InputError(f"{name}: kind {found!r} is not one of {', '.join(KINDS)}")
    if kind is not None and found != kind:
        raise InputError(f"{name}: this is a {found} recipe, not {kind}")
    try:
        return _build(RUN_CLASSES[found], {**data, "kind": found}, "")
    except InputError as err:
        raise InputError(f"{name}: {str(err).lstrip(': ')}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], name: str = "--set") -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a recipe dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"{name} {item!r}: expected KEY=VALUE, e.g. train.steps=100")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"{name} {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path, kind: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe into an ``AutoencoderRun`` or ``DiffusionRun``.

    Raises:
        InputError: missing file, bad YAML, unknown keys (listing the valid ones), bad values, or a
        recipe of the wrong ``kind``; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text file (byte {err.start} is not UTF-8)") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the recipe ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    data = apply_overrides(data if data is not None else {}, overrides or [])
    cfg = from_dict(data, kind, name=str(path))
    _resolve_paths(cfg, path.parent)
    return cfg


def resolve_path(value: str, base: Path) -> str:
    """``value`` (a path or glob) as given when it matches from the current directory, else relative to
    ``base`` when it matches there, else unchanged (the loader then reports it)."""
    p = Path(value).expanduser()
    if p.is_absolute() or _matches(str(p)) or not _matches(str(base / p)):
        return str(p)
    return str(base / p)


def _matches(pattern: str) -> bool:
    return bool(glob.glob(pattern)) if glob.has_magic(pattern) else Path(pattern).exists()


def _resolve_paths(cfg: RunConfig, base: Path) -> None:
    for group in (cfg.data.sources, cfg.data.validation):
        for src in group:
            if src.paths is not None:
                src.paths = tuple(resolve_path(p, base) for p in src.paths)
    if isinstance(cfg, (DiffusionRun, DecoderRun)) and cfg.autoencoder is not None:
        cfg.autoencoder = resolve_path(cfg.autoencoder, base)
