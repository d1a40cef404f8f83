"""``ldm-med train diffusion --data DIR``: generation models trained on your own files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ldm_med
from ldm_med.checkpoint import load_model
from ldm_med.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _folder(root: Path, dims: int = 2) -> Path:
    rng = np.random.default_rng(0)
    rows = ["file,size"]
    for label in ("cells", "nuclei"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            shape = (20, 20, 1) if dims == 2 else (20, 20, 8)
            data = rng.random(shape).astype(np.float32) * (i + 1)
            name = f"{label}/{i}.nii.gz"
            ldm_med.save_volume(ldm_med.Volume(data), root / name)
            rows.append(f"{name},{i + 1}")
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    return root


def _train(data: Path, out: Path, ae: Path, *extra: str) -> int:
    return main(["train", "diffusion", "--config", str(CONFIGS / "tiny_generate.yaml"), "--autoencoder",
                 str(ae), "--data", str(data), "--out", str(out), "-q", *extra])


def test_a_folder_trains_a_class_per_subfolder_with_csv_attributes_and_resumes(tmp_path,
                                                                               tiny_autoencoder_file):
    data = _folder(tmp_path / "mine")
    assert _train(data, tmp_path / "run", tiny_autoencoder_file, "--steps", "2") == 0
    extra = load_model(tmp_path / "run").extra
    assert extra["label_names"] == ["cells", "nuclei"]
    assert extra["attributes"]["size"]["low"] == 1.0 and extra["attributes"]["size"]["high"] == 3.0
    assert set(extra["classes"]) == {"cells", "nuclei"}
    assert _train(data, tmp_path / "run", tiny_autoencoder_file, "--steps", "4", "--resume") == 0
    assert load_model(tmp_path / "run").extra["step"] == 4
    opts = ldm_med.GenerateOptions("nuclei", checkpoint=str(tmp_path / "run" / "model.safetensors"), steps=2,
                                   attrs=(("size", 2.0),))
    assert ldm_med.generate(opts).volumes[0].data.shape == (32, 32, 1)


@pytest.mark.parametrize("case, message", [
    ("empty", "no image or volume files"),
    ("mixed", "files of [2, 3] dimensions"),
    ("unreadable", "broken.nii.gz"),
])
def test_bad_training_folders_exit_2_naming_the_problem(tmp_path, tiny_autoencoder_file, capsys, case,
                                                       message):
    data = tmp_path / case
    if case == "empty":
        (data / "a").mkdir(parents=True)
    else:
        _folder(data)
        if case == "mixed":
            volume = ldm_med.Volume(np.zeros((20, 20, 8), np.float32))
            ldm_med.save_volume(volume, data / "cells" / "3d.nii.gz")
        else:
            (data / "cells" / "broken.nii.gz").write_bytes(b"not a volume at all")
    assert _train(data, tmp_path / "run", tiny_autoencoder_file, "--steps", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def _tiny(tiny_autoencoder_file, tmp_path, out: str, *extra: str) -> int:
    return main(["train", "diffusion", "--config", str(CONFIGS / "tiny_generate.yaml"), "--autoencoder",
                 str(tiny_autoencoder_file), "--out", str(tmp_path / out), "-q", *extra])


def test_train_init_starts_weights_and_ema_from_a_model_file(tmp_path, tiny_autoencoder_file, tiny_generator,
                                                             capsys):
    import torch

    from ldm_med.config import load_config
    from ldm_med.train.distributed import DistContext
    from ldm_med.train.loop import _start

    cfg = load_config(CONFIGS / "tiny_generate.yaml", "diffusion", overrides=[f"train.init={tiny_generator}"])
    cfg.autoencoder = str(tiny_autoencoder_file)
    _, task, step, _ = _start(cfg, tmp_path / "run", DistContext(), resume=False)
    start = load_model(tiny_generator).model.state_dict()
    for trained in (task.trainables[0].module.state_dict(), task.trainables[0].ema.model.state_dict()):
        assert step == 0 and all(torch.equal(trained[k], v) for k, v in start.items())
    # and from the command line, with a learning rate YAML 1.1 reads as a string (2e-4, no dot)
    assert _tiny(tiny_autoencoder_file, tmp_path, "cli", "--steps", "2", "--set",
                 f"train.init={tiny_generator}", "--set", "optim.lr=2e-4") == 0
    assert f"weights and EMA start from {tiny_generator}" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("autoencoder", "train.init holds an autoencoder, this run trains a denoiser"),
    ("other network", "train.init is another network than the recipe's model"),
])
def test_train_init_refuses_another_model_naming_the_file(tmp_path, tiny_autoencoder_file, tiny_generator,
                                                          capsys, case, message):
    init = tiny_autoencoder_file if case == "autoencoder" else tiny_generator
    extra = ["--set", "model.channels=[8, 8]"] if case == "other network" else []
    assert _tiny(tiny_autoencoder_file, tmp_path, "run", "--set", f"train.init={init}", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(init) in err[0] and message in err[0]
