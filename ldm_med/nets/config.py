"""Typed network configs: plain dataclasses, built from YAML dicts and saved inside checkpoints.

``from_dict`` rejects unknown keys with an error listing the valid ones, turns YAML lists into
tuples and validates; ``to_dict`` returns the resolved config (presets expanded), so
``Config.from_dict(cfg.to_dict()) == cfg``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from typing_extensions import Self

from ldm_med.errors import InputError

T = TypeVar("T", bound="_Config")

DENOISER_ARCHS = ("unet", "dit")

# DiT sizes (hidden_size, depth, num_heads), after Peebles & Xie's ``DiT_models``; "dit-tiny" is
# the CPU-sized default used here.
DIT_PRESETS: dict[str, dict[str, int]] = {
    "dit-tiny": {"hidden_size": 192, "depth": 6, "num_heads": 4},
    "dit-s": {"hidden_size": 384, "depth": 12, "num_heads": 6},
    "dit-b": {"hidden_size": 768, "depth": 12, "num_heads": 12},
}


class _Config:
    """Shared ``from_dict`` / ``to_dict`` for the config dataclasses."""

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Self:
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(
                f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }


def _check_levels(name: str, channels: tuple, attention_levels: tuple, groups: int) -> None:
    if len(channels) < 1:
        raise InputError(f"{name}: channels must name at least one level")
    if len(attention_levels) != len(channels):
        raise InputError(
            f"{name}: attention_levels has {len(attention_levels)} entries but channels has "
            f"{len(channels)}; give one bool per level"
        )
    bad = [c for c in channels if c % groups]
    if bad:
        raise InputError(f"{name}: channels {bad} are not multiples of norm_num_groups={groups}")


def _check_spatial_dims(name: str, spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise InputError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims}")


@dataclass
class AutoencoderConfig(_Config):
    """KL autoencoder (MONAI ``AutoencoderKL``).

    ``spatial_dims=2``: a 2D autoencoder applied slice by slice to volumes, so latent slice ``k``
    is image slice ``k`` (``slice_aligned`` must then be True). ``spatial_dims=3``: a 3D
    autoencoder that downsamples every axis (never slice aligned; ``slice_aligned`` is set False).
    The downsampling factor is ``2 ** (len(channels) - 1)``.
    """

    spatial_dims: int = 2
    in_channels: int = 1
    latent_channels: int = 4
    channels: tuple[int, ...] = (32, 64, 64)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False)
    norm_num_groups: int = 16
    slice_aligned: bool = True

    def __post_init__(self) -> None:
        _check_spatial_dims("AutoencoderConfig", self.spatial_dims)
        _check_levels(
            "AutoencoderConfig", self.channels, self.attention_levels, self.norm_num_groups
        )
        if self.spatial_dims == 3:
            self.slice_aligned = False
        elif not self.slice_aligned:
            raise InputError(
                "AutoencoderConfig: a 2D autoencoder is always applied slice by slice "
                "(slice_aligned=True); use spatial_dims=3 for a 3D autoencoder"
            )

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass
class DenoiserConfig(_Config):
    """Denoiser network: ``arch`` "unet" (MONAI ``DiffusionModelUNet``) or "dit" (``DiTDenoiser``).

    The network sees ``in_channels + cond_channels`` input channels (``cond`` concatenated to
    ``x``) and returns ``out_channels`` (default ``in_channels``). ``num_classes > 0`` adds class
    labels plus one "null" label (index ``num_classes``) for classifier-free guidance.
    ``from_dict`` also accepts ``preset`` (a key of ``DIT_PRESETS``), expanded before the
    explicit keys.
    """

    arch: str = "unet"
    spatial_dims: int = 3
    in_channels: int = 4
    cond_channels: int = 0
    out_channels: int | None = None
    num_classes: int = 0
    # unet
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 16
    # dit
    patch_size: int | tuple[int, ...] = 2
    hidden_size: int = 192
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    pos_embed: str = "sincos"  # "sincos" (fixed) or "learned" (sincos + learned per-axis tables)
    max_grid: int = 128  # "learned" only: largest token grid per axis
    attention: str = "full"  # "full", or "slice": alternate within-slice / across-slice attention

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DenoiserConfig:
        d = dict(d or {})
        preset = d.pop("preset", None)
        if preset is not None:
            if preset not in DIT_PRESETS:
                raise InputError(
                    f"unknown DiT preset {preset!r}; valid presets are {sorted(DIT_PRESETS)}"
                )
            d = {**DIT_PRESETS[preset], **d}
        return super().from_dict(d)

    def __post_init__(self) -> None:
        if self.arch not in DENOISER_ARCHS:
            raise InputError(
                f"unknown denoiser arch {self.arch!r}; valid archs are {list(DENOISER_ARCHS)}"
            )
        _check_spatial_dims("DenoiserConfig", self.spatial_dims)
        if self.out_channels is None:
            self.out_channels = self.in_channels
        if (
            min(self.in_channels, self.out_channels) < 1
            or min(self.cond_channels, self.num_classes) < 0
        ):
            raise InputError("DenoiserConfig: channel and class counts must be positive")
        if isinstance(self.patch_size, int):
            self.patch_size = (self.patch_size,) * self.spatial_dims
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.arch == "unet":
            self._check_unet()
        else:
            self._check_dit()

    def _check_unet(self) -> None:
        _check_levels("DenoiserConfig", self.channels, self.attention_levels, self.norm_num_groups)
        # MONAI's middle block always has attention, at channels[-1]
        attn = {c for c, a in zip(self.channels, self.attention_levels) if a} | {self.channels[-1]}
        if any(c % self.num_head_channels for c in attn):
            raise InputError(
                f"DenoiserConfig: num_head_channels={self.num_head_channels} must divide the "
                f"channels of every attention level and of the last level ({sorted(attn)})"
            )

    def _check_dit(self) -> None:
        if len(self.patch_size) != self.spatial_dims or min(self.patch_size) < 1:
            raise InputError(
                f"DenoiserConfig: patch_size {self.patch_size} needs {self.spatial_dims} "
                "positive entries"
            )
        if self.hidden_size % self.num_heads:
            raise InputError(
                f"DenoiserConfig: hidden_size {self.hidden_size} is not a multiple of "
                f"num_heads {self.num_heads}"
            )
        for name, valid in (("attention", ("full", "slice")), ("pos_embed", ("sincos", "learned"))):
            if getattr(self, name) not in valid:
                raise InputError(
                    f"DenoiserConfig: {name} must be one of {list(valid)}, "
                    f"got {getattr(self, name)!r}"
                )


# Defaults sized for CPU (see docs/performance.md): 4 latent channels + 5 conditioning channels
# on (D, H, W) latent windows such as (16, 32, 32), D running along the slice axis.
DEFAULT_UNET_3D: dict[str, Any] = {
    "arch": "unet",
    "spatial_dims": 3,
    "in_channels": 4,
    "cond_channels": 5,
    "channels": [16, 32, 64],
    "attention_levels": [False, False, True],
    "num_res_blocks": 1,
    "num_head_channels": 32,
    "norm_num_groups": 8,
}

DEFAULT_DIT_3D: dict[str, Any] = {
    "arch": "dit",
    "spatial_dims": 3,
    "in_channels": 4,
    "cond_channels": 5,
    "patch_size": [1, 2, 2],
    "attention": "slice",
    **DIT_PRESETS["dit-tiny"],
}

__all__ = [
    "DEFAULT_DIT_3D",
    "DEFAULT_UNET_3D",
    "DENOISER_ARCHS",
    "DIT_PRESETS",
    "AutoencoderConfig",
    "DenoiserConfig",
]
