"""Shared test setup.

One torch thread per test process: the suite runs as two xdist workers on two cores, and OpenMP
threads waiting for a busy core stall every small op (measured: 13 s instead of 65 s for tests/nets).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_autoencoder_file(tmp_path_factory) -> Path:
    """A tiny autoencoder model file (configs/tiny_autoencoder.yaml, 6 steps)."""
    from ldm_med.config import load_config
    from ldm_med.train import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_autoencoder")
    train(load_config(CONFIGS / "tiny_autoencoder.yaml", "autoencoder"), out, device="cpu", progress=False)
    return out / "model.safetensors"


@pytest.fixture(scope="session")
def tiny_generator(tiny_autoencoder_file, tmp_path_factory) -> Path:
    """A tiny 2D generation model file (configs/tiny_generate.yaml: the four presets at 32x32, a tiny
    U-Net, 4 steps). Seconds on a CPU; the plumbing of ``ldm_med.generate`` (classes, attributes,
    guidance), not quality."""
    from ldm_med.config import load_config
    from ldm_med.train import train

    torch.set_num_threads(1)
    cfg = load_config(CONFIGS / "tiny_generate.yaml", "diffusion")
    cfg.autoencoder = str(tiny_autoencoder_file)
    out = tmp_path_factory.mktemp("tiny_generator")
    train(cfg, out, device="cpu", progress=False)
    return out / "model.safetensors"
