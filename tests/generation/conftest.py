"""Helpers for the generation tests (the tiny models are session fixtures in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

from ldm_med.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_recipe(kind: str, *overrides: str, autoencoder: Path | None = None):
    cfg = load_config(CONFIGS / f"tiny_{kind}.yaml", None, list(overrides))
    if autoencoder is not None:
        cfg.autoencoder = str(autoencoder)
    return cfg
