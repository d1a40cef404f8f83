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
def tiny_generator(tmp_path_factory) -> Path:
    """A tiny 2D generation model file: the shipped recipe (configs/generate_2d.yaml) with the four presets
    at 32x32, a tiny U-Net and 2 training steps on a 6-step tiny autoencoder. Seconds on a CPU; the
    plumbing of ``ldm_med.generate`` (classes, attributes, guidance), not quality."""
    from ldm_med import PRESET_NAMES
    from ldm_med.config import load_config
    from ldm_med.train import train

    torch.set_num_threads(1)
    ae = tmp_path_factory.mktemp("tiny_generator_ae")
    train(load_config(CONFIGS / "tiny_autoencoder.yaml", "autoencoder"), ae, device="cpu", progress=False)
    sources = "[" + ", ".join(f"{{preset: {p}, count: 2, seed: 0}}" for p in PRESET_NAMES) + "]"
    cfg = load_config(CONFIGS / "generate_2d.yaml", "diffusion", [
        "model.in_channels=2", "model.channels=[8, 16]", "model.attention_levels=[false, false]",
        "model.num_head_channels=8", "model.norm_num_groups=4", f"data.sources={sources}",
        "data.validation=[{preset: medical-ct, count: 1, seed: 9000}]", "data.crop=[32, 32]",
        "data.batch_size=2", "data.val_batches=1", "train.steps=2", "train.log_every=1",
        "train.val_every=2", "train.sample_every=2", "train.ckpt_every=2", "optim.warmup_steps=0"])
    cfg.autoencoder = str(ae / "model.safetensors")
    out = tmp_path_factory.mktemp("tiny_generator")
    train(cfg, out, device="cpu", progress=False)
    return out / "model.safetensors"
