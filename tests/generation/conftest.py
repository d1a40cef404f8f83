"""Helpers for the generation tests (the tiny models are session fixtures in tests/conftest.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ldm_med.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_recipe(kind: str, *overrides: str, autoencoder: Path | None = None):
    cfg = load_config(CONFIGS / f"tiny_{kind}.yaml", None, list(overrides))
    if autoencoder is not None:
        cfg.autoencoder = str(autoencoder)
    return cfg


@pytest.fixture
def recorded(tiny_generator, tmp_path, capsys):
    """``recorded(cls, *flags) -> (model, listing)``: a copy of the tiny generator with ``flags``
    (``python -m ldm_med.train.recommend``) recorded for class ``cls``, and what ``generate --list`` says."""
    from ldm_med.cli import main
    from ldm_med.train.recommend import main as recommend

    def record(cls: str, *flags: str) -> tuple[Path, str]:
        model = tmp_path / "model.safetensors"
        shutil.copy(tiny_generator, model)
        assert recommend([str(model), cls, *flags, "--why", "t"]) == 0
        assert main(["generate", "--list", "--checkpoint", str(model)]) == 0
        return model, capsys.readouterr().out

    return record
