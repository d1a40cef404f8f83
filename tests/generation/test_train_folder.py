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
