"""Shared fixtures for the training tests: tiny recipes, one thread, one trained tiny autoencoder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldm_med.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks train fastest (and identically) on one thread, whatever else runs on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(kind: str, *overrides: str, autoencoder: Path | None = None):
    """The tiny recipe of ``kind`` with ``section.key=value`` overrides."""
    cfg = load_config(CONFIGS / f"tiny_{kind}.yaml", kind, list(overrides))
    if autoencoder is not None:
        cfg.autoencoder = str(autoencoder)
    return cfg


@pytest.fixture
def tiny():
    """``tiny(kind, *overrides, autoencoder=None)``: a tiny recipe."""
    return _tiny


@pytest.fixture
def configs_dir() -> Path:
    return CONFIGS


@pytest.fixture(scope="session")
def ae_run(tmp_path_factory) -> Path:
    """A tiny autoencoder run folder (6 steps, with checkpoints, logs and sample grids)."""
    from ldm_med.train import train

    out = tmp_path_factory.mktemp("ae_run")
    torch.set_num_threads(1)
    train(_tiny("autoencoder"), out, device="cpu", progress=False)
    return out
