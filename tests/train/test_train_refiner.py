"""``ldm-med train refiner``: a tiny recipe trains, exports and drives a reconstruction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ldm_med.cli import main
from ldm_med.config import RefinerRun, from_dict
from ldm_med.data.phantoms import mr_head
from ldm_med.errors import InputError
from ldm_med.inpainting.models import load_refiner
from ldm_med.io import load_volume, save_nifti

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_refiner_trains_exports_and_reconstructs(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "refiner", "--config", str(ROOT / "configs/tiny_refiner.yaml"), "--out", str(run),
                 "-q"]) == 0
    assert (run / "model.safetensors").is_file() and (run / "config.yaml").is_file()
    log = (run / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss" and log[-1].startswith("20,")
    shipped = tmp_path / "refiner.safetensors"
    assert main(["train", "export", str(run), "-o", str(shipped), "--half"]) == 0
    net = load_refiner(shipped)
    assert net.channels == 8 and net.depth == 3

    src, out = tmp_path / "in.nii.gz", tmp_path / "out.nii.gz"
    save_nifti(mr_head(shape=(32, 28, 12), seed=9), src)
    assert main(["reconstruct", str(src), "-o", str(out), "--missing", "keep-every:2",
                 "--refiner", str(shipped), "--adapt-steps", "5", "-q"]) == 0
    a, b = load_volume(src), load_volume(out)
    np.testing.assert_array_equal(b.data[..., ::2], a.data[..., ::2])


def test_refiner_recipes_are_checked():
    assert isinstance(from_dict({"kind": "refiner", "data": {"sources": [{"generator": "ct"}]}}), RefinerRun)
    with pytest.raises(InputError, match="crop"):
        from_dict({"kind": "refiner", "data": {"sources": [{"generator": "ct"}], "crop": [8, 8, 8]}})
    with pytest.raises(InputError, match="depth"):
        from_dict({"kind": "refiner", "model": {"depth": 1}, "data": {"sources": [{"generator": "ct"}]}})


def test_refiner_runs_cannot_resume(tmp_path, capsys):
    code = main(["train", "refiner", "--config", str(ROOT / "configs/tiny_refiner.yaml"), "--out",
                 str(tmp_path), "--resume"])
    assert code == 2 and "--resume" in capsys.readouterr().err
