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


def test_refiner_rate_decays_from_one_to_final_along_a_cosine():
    from ldm_med.utils import lr_factor  # the schedule of every recipe, refiners included

    assert lr_factor(0, 100, 0, "cosine", 0.02) == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "cosine", 0.02) == pytest.approx(0.51)
    assert lr_factor(100, 100, 0, "cosine", 0.02) == pytest.approx(0.02)
    factors = [lr_factor(s, 100, 0, "cosine", 0.1) for s in range(101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))
    assert {lr_factor(s, 100, 0, "constant", 0.1) for s in range(0, 101, 10)} == {1.0}


def _recipe(tmp_path: Path, name: str, **changes) -> Path:
    """configs/tiny_refiner.yaml with sections updated (``train={...}``, ``model={...}``)."""
    import yaml

    recipe = yaml.safe_load((ROOT / "configs/tiny_refiner.yaml").read_text())
    for section, values in changes.items():
        recipe[section].update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_refiner_continues_from_init_weights(tmp_path, capsys):
    import torch

    first = tmp_path / "first"
    assert main(["train", "refiner", "--config", str(_recipe(tmp_path, "first")), "--out", str(first),
                 "-q"]) == 0
    weights = first / "model.safetensors"
    # one step at a vanishing rate from the first run's weights: the result is those weights
    again = _recipe(tmp_path, "again", train={"steps": 1, "init": str(weights)},
                    optim={"lr": 1e-12, "schedule": "cosine", "final_lr_fraction": 0.1})
    assert main(["train", "refiner", "--config", str(again), "--out", str(tmp_path / "again"), "-q"]) == 0
    before, after = load_refiner(weights), load_refiner(tmp_path / "again" / "model.safetensors")
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    # the last layer starts at zero in a fresh network: the first run's is not, so the weights came along
    assert before.body[-1].weight.abs().max() > 0

    other = _recipe(tmp_path, "other", train={"init": str(weights)}, model={"channels": 4})
    assert main(["train", "refiner", "--config", str(other), "--out", str(tmp_path / "other"), "-q"]) == 2
    assert "another network" in capsys.readouterr().err
