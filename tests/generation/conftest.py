"""Fixtures for the generation tests: a tiny autoencoder and tiny generation models trained on it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldm_med.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_recipe(kind: str, *overrides: str, autoencoder: Path | None = None):
    cfg = load_config(CONFIGS / f"tiny_{kind}.yaml", None, list(overrides))
    if autoencoder is not None:
        cfg.autoencoder = str(autoencoder)
    return cfg


@pytest.fixture(scope="session")
def tiny_ae(tmp_path_factory) -> Path:
    from ldm_med.train import train

    out = tmp_path_factory.mktemp("gen_ae")
    torch.set_num_threads(1)
    train(tiny_recipe("autoencoder"), out, device="cpu", progress=False)
    return out / "model.safetensors"


@pytest.fixture(scope="session")
def tiny_generator(tiny_ae, tmp_path_factory) -> Path:
    """A 2D generation model with the four presets (4 steps): the plumbing, not quality."""
    from ldm_med.train import train

    out = tmp_path_factory.mktemp("gen_model")
    torch.set_num_threads(1)
    train(tiny_recipe("generate", autoencoder=tiny_ae), out, device="cpu", progress=False)
    return out / "model.safetensors"
