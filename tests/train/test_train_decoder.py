"""``ldm-med train decoder``: a small decoder distilled from the shipped autoencoder's, paired with it by
sha256, used for the uncertainty map's samples only with that autoencoder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldm_med.checkpoint import load_model, sha256_file
from ldm_med.cli import main
from ldm_med.config import DecoderRun, from_dict
from ldm_med.errors import InputError
from ldm_med.inpainting.models import DEFAULT_AUTOENCODER, spread_decoder_for
from ldm_med.nets.autoencoder import SliceDecoder

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs/tiny_decoder.yaml")


def test_tiny_decoder_distils_exports_and_pairs_with_its_teacher(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "decoder", "--config", TINY, "--out", str(run), "-q"]) == 0
    rows = [line.split(",") for line in (run / "log.csv").read_text().splitlines()]
    assert rows[0] == ["step", "loss", "relative_difference_error"] and rows[-1][0] == "30"
    assert float(rows[-1][2]) < float(rows[1][2])  # it learns the teacher's differences
    shipped = tmp_path / "spread_decoder.safetensors"
    assert main(["train", "export", str(run), "-o", str(shipped), "--half"]) == 0
    loaded = load_model(shipped)
    teacher = sha256_file(DEFAULT_AUTOENCODER)
    assert loaded.kind == "decoder" and loaded.extra["autoencoder_sha256"] == teacher
    assert 0 < loaded.extra["val_relative_difference_error"] < 10

    net = spread_decoder_for(teacher, "cpu", path=shipped)
    assert isinstance(net, SliceDecoder)
    assert net.decode(torch.zeros(2, 4, 3, 5)).shape == (2, 1, 12, 20)
    assert spread_decoder_for("0" * 64, "cpu", path=shipped) is None  # another autoencoder: not used
    assert spread_decoder_for(teacher, "cpu", path=tmp_path / "absent.safetensors") is None


def test_decoder_recipes_are_checked(tmp_path, capsys):
    sources = {"sources": [{"generator": "ct"}]}
    assert isinstance(from_dict({"kind": "decoder", "data": sources}), DecoderRun)
    with pytest.raises(InputError, match="crop"):
        from_dict({"kind": "decoder", "data": {**sources, "crop": [30, 30]}})
    with pytest.raises(InputError, match="2D"):
        from_dict({"kind": "decoder", "model": {"spatial_dims": 3}, "data": sources})
    # a student that cannot read the teacher's latents is refused before any training
    code = main(["train", "decoder", "--config", TINY, "--out", str(tmp_path / "r"), "--set",
                 "model.latent_channels=3", "-q"])
    assert code == 2 and "latent_channels" in capsys.readouterr().err
    code = main(["train", "decoder", "--config", TINY, "--out", str(tmp_path / "r"), "--resume"])
    assert code == 2 and "--resume" in capsys.readouterr().err
