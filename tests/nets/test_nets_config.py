from __future__ import annotations

import pytest
import yaml

from ldm_med.errors import InputError
from ldm_med.nets import (
    DEFAULT_DIT_3D,
    DEFAULT_UNET_3D,
    DIT_PRESETS,
    AutoencoderConfig,
    DenoiserConfig,
)


@pytest.mark.parametrize(
    "cfg",
    [
        AutoencoderConfig(),
        AutoencoderConfig(
            spatial_dims=3, channels=(8, 16), attention_levels=(False, True), norm_num_groups=8
        ),
        DenoiserConfig(),
        DenoiserConfig(
            arch="dit", spatial_dims=2, patch_size=(1, 2), num_classes=3, cond_channels=2
        ),
        DenoiserConfig.from_dict(DEFAULT_UNET_3D),
        DenoiserConfig.from_dict(DEFAULT_DIT_3D),
    ],
)
def test_round_trip_through_yaml(cfg):
    d = yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    assert type(cfg).from_dict(d) == cfg


@pytest.mark.parametrize("cls", [AutoencoderConfig, DenoiserConfig])
def test_unknown_key_lists_valid_keys(cls):
    with pytest.raises(InputError, match=r"unknown key\(s\) \['chanels'\].*'channels'"):
        cls.from_dict({"chanels": (8, 16)})


def test_defaults_and_normalisation():
    d = DenoiserConfig(in_channels=6, patch_size=2)
    assert d.out_channels == 6 and d.patch_size == (2, 2, 2)
    assert AutoencoderConfig(spatial_dims=3).slice_aligned is False
    assert (
        AutoencoderConfig(
            channels=(8, 16, 16, 16), attention_levels=(False,) * 4, norm_num_groups=8
        ).downsample
        == 8
    )


def test_presets_expand_and_explicit_keys_win():
    cfg = DenoiserConfig.from_dict({"arch": "dit", "preset": "dit-s", "depth": 2})
    assert (cfg.hidden_size, cfg.num_heads, cfg.depth) == (
        DIT_PRESETS["dit-s"]["hidden_size"],
        6,
        2,
    )
    with pytest.raises(InputError, match="dit-tiny"):
        DenoiserConfig.from_dict({"preset": "dit-xxl"})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "vit"}, r"valid archs are \['unet', 'dit'\]"),
        ({"spatial_dims": 1}, "spatial_dims must be 2 or 3"),
        ({"channels": (16, 24, 32)}, "norm_num_groups"),
        ({"attention_levels": (False,)}, "one bool per level"),
        ({"channels": (16, 32, 48)}, "num_head_channels=32 must divide"),
        ({"arch": "dit", "hidden_size": 100, "num_heads": 3}, "multiple of num_heads"),
        ({"arch": "dit", "patch_size": (1, 2)}, "needs 3 positive entries"),
        ({"arch": "dit", "attention": "axial"}, r"one of \['full', 'slice'\]"),
    ],
)
def test_invalid_denoiser_configs(kwargs, match):
    with pytest.raises(InputError, match=match):
        DenoiserConfig(**kwargs)


def test_2d_autoencoder_must_be_slice_aligned():
    with pytest.raises(InputError, match="slice by slice"):
        AutoencoderConfig(slice_aligned=False)
