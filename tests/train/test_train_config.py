"""YAML recipes: typed, validated, resolved; errors name the file, the key and the valid keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ldm_med.config import RUN_CLASSES, from_dict, load_config, to_dict
from ldm_med.errors import InputError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))


def test_shipped_recipes_are_present():
    names = {p.stem for p in RECIPES}
    for kind in ("autoencoder", "diffusion"):
        assert {f"tiny_{kind}", f"default_{kind}", f"gpu_{kind}"} <= names
    assert {"tiny_refiner", "default_refiner", "ct_refiner"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads_and_round_trips(path):
    cfg = load_config(path)
    assert isinstance(cfg, RUN_CLASSES[yaml.safe_load(path.read_text())["kind"]])
    resolved = to_dict(cfg)
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved  # plain data
    assert from_dict(resolved) == cfg


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_unknown_top_level_key_lists_valid_keys_and_file(tmp_path):
    path = _write(tmp_path, "kind: autoencoder\nmodle: {}\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    message = str(err.value)
    assert "recipe.yaml" in message and "'modle'" in message and "model" in message and "optim" in message


def test_unknown_nested_key_names_the_section(tmp_path):
    path = _write(tmp_path, "kind: autoencoder\ndata:\n  sources: [{generator: ct}]\n  batchsize: 3\n")
    expected = r"recipe.yaml: data: unknown key\(s\) 'batchsize'; valid keys: .*batch_size"
    with pytest.raises(InputError, match=expected):
        load_config(path)


def test_unknown_model_key_and_bad_values(tmp_path):
    with pytest.raises(InputError, match="recipe.yaml: model: .*chanels"):
        load_config(_write(tmp_path, "kind: autoencoder\nmodel: {chanels: [8]}\n"))
    with pytest.raises(InputError, match="train.steps: expected an integer"):
        load_config(_write(tmp_path, "kind: autoencoder\ntrain: {steps: ten}\n"))
    with pytest.raises(InputError, match="exactly one of generator, real, paths"):
        load_config(_write(tmp_path, "kind: autoencoder\ndata: {sources: [{generator: ct, real: train}]}\n"))
    with pytest.raises(InputError, match="cond_channels"):
        load_config(_write(tmp_path, "kind: diffusion\nmodel: {in_channels: 4, cond_channels: 0}\n"))


def test_wrong_kind_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="not diffusion"):
        load_config(CONFIGS / "tiny_autoencoder.yaml", "diffusion")
    with pytest.raises(InputError, match="no such recipe"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(_write(tmp_path, "kind: [unclosed\n"))


def test_overrides_and_relative_paths(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.nii.gz").write_bytes(b"")
    path = _write(tmp_path, "kind: autoencoder\n"
                            "data: {sources: [{paths: ['scans/*.nii.gz']}], crop: [16, 16]}\n")
    cfg = load_config(path, overrides=["train.steps=12", "data.batch_size=3"])
    assert cfg.train.steps == 12 and cfg.data.batch_size == 3
    assert cfg.data.sources[0].paths == (str(tmp_path / "scans" / "*.nii.gz"),)  # found beside the recipe
    with pytest.raises(InputError, match="KEY=VALUE"):
        load_config(path, overrides=["train.steps"])
    # YAML 1.1 reads 2e-4 (no dot) as a string: a float key takes it as the number it is, nothing else
    assert load_config(path, overrides=["optim.lr=2e-4"]).optim.lr == 2e-4
    for bad in ("optim.lr=2e", "optim.lr=e-4", "optim.lr=two"):
        with pytest.raises(InputError, match="optim.lr: expected a number"):
            load_config(path, overrides=[bad])
