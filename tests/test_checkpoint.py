"""Checkpoint files: safetensors + JSON metadata, never pickle; clear errors for anything else."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ldm_med.checkpoint import (
    CHECKSUM_KEY,
    FORMAT_VERSION,
    autoencoder_reference,
    content_digest,
    export_model,
    load_inpainting_pair,
    load_model,
    load_state,
    save_model,
    save_state,
)
from ldm_med.errors import InputError
from ldm_med.nets import AutoencoderConfig, DenoiserConfig, build_autoencoder, build_denoiser

AE_CFG = {"spatial_dims": 2, "latent_channels": 2, "channels": [8, 8], "attention_levels": [False, False],
          "norm_num_groups": 4}
DEN_CFG = {"arch": "unet", "spatial_dims": 3, "in_channels": 2, "cond_channels": 3, "channels": [8, 16],
           "attention_levels": [False, False], "num_head_channels": 8, "norm_num_groups": 4}
SDE = {"name": "vp-linear", "beta_min": 0.1, "beta_max": 20.0, "s": 0.008}


def _ae():
    torch.manual_seed(0)
    return build_autoencoder(AutoencoderConfig.from_dict(AE_CFG))


def _den():
    torch.manual_seed(1)
    return build_denoiser(DenoiserConfig.from_dict(DEN_CFG))


def _save_pair(folder: Path) -> tuple[Path, Path]:
    ae_path = save_model(folder / "ae" / "model.safetensors", _ae(), kind="autoencoder",
                         config={"model": AE_CFG}, extra={"latent_scale": 2.0})
    den_dir = folder / "den"
    den_path = save_model(den_dir / "model.safetensors", _den(), kind="denoiser", config={"model": DEN_CFG},
                          extra={"task": "slice-inpainting", "sde": SDE, "prediction": "v",
                                 "residual_scale": 0.5, "latent_scale": 2.0,
                                 "autoencoder": autoencoder_reference(ae_path, den_dir)})
    return ae_path, den_path


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_model_round_trip(tmp_path):
    ae = _ae()
    path = save_model(tmp_path / "ae.safetensors", ae, kind="autoencoder",
                      config={"model": AE_CFG, "seed": 3}, extra={"latent_scale": 1.25})
    loaded = load_model(path)
    assert loaded.kind == "autoencoder" and loaded.extra == {"latent_scale": 1.25}
    assert loaded.config["seed"] == 3 and loaded.version
    assert not loaded.model.training
    _assert_same_weights(ae, loaded.model)
    with safe_open(str(path), framework="pt") as f:  # everything is in the safetensors header, as JSON
        meta = f.metadata()
    assert meta["format"] == "ldm-med" and int(meta["format_version"]) == FORMAT_VERSION
    assert json.loads(meta["config"])["model"]["channels"] == [8, 8]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


def test_half_export_is_smaller_and_loads_as_float32(tmp_path):
    den = _den()
    full = save_model(tmp_path / "f.safetensors", den, kind="denoiser", config={"model": DEN_CFG},
                      extra={"sde": SDE})
    half = save_model(tmp_path / "h.safetensors", den, kind="denoiser", config={"model": DEN_CFG},
                      extra={"sde": SDE}, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    for key, value in loaded.model.state_dict().items():
        ref = den.state_dict()[key]
        if value.is_floating_point():
            assert value.dtype == torch.float32
            torch.testing.assert_close(value, ref, atol=2e-3, rtol=2e-3)
    x0 = loaded.denoiser()(torch.zeros(1, 2, 4, 8, 8), 0.5, cond=torch.zeros(1, 3, 4, 8, 8))
    assert x0.shape == (1, 2, 4, 8, 8)


GARBAGE = [b"", b"not a checkpoint at all" * 20, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"]


@pytest.mark.parametrize("content", GARBAGE)
def test_garbage_file_is_input_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.safetensors"):
        load_model(path)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such checkpoint"):
        load_model(tmp_path / "absent.safetensors")


def test_foreign_safetensors_is_input_error(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(InputError, match="not an ldm-med checkpoint"):
        load_model(path)


def _rewrite_metadata(path: Path, reseal: bool = True, **changes: str) -> None:
    """Change metadata entries; ``reseal``: store the matching checksum too (a consistent file written
    with that content), else leave the old one (a tampered file)."""
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    meta = {**meta, **changes}
    if reseal:
        meta[CHECKSUM_KEY] = content_digest(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def test_unknown_format_version_is_input_error(tmp_path):
    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    _rewrite_metadata(path, format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(InputError, match="format version"):
        load_model(path)


def test_tensors_not_matching_config_is_input_error(tmp_path):
    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    _rewrite_metadata(path, config=json.dumps({"model": {**AE_CFG, "channels": [8, 16]}}))
    with pytest.raises(InputError, match="do not match"):
        load_model(path)


def test_training_state_round_trip_with_optimizer(tmp_path):
    ae = _ae()
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-3)
    ae(torch.randn(2, 1, 8, 8))[0].square().mean().backward()
    opt.step()
    state = {"step": 7, "elapsed": 1.5, "nested": (1, None, "x"), "model": ae.state_dict(),
             "optimizer": opt.state_dict()}
    save_state(tmp_path / "state.safetensors", state, config={"model": AE_CFG}, extra={"a": 1})
    back, config, extra = load_state(tmp_path / "state.safetensors")
    assert back["step"] == 7 and back["nested"] == (1, None, "x")
    assert config == {"model": AE_CFG} and extra == {"a": 1}
    opt2 = torch.optim.AdamW(_ae().parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(value, opt2.state_dict()["state"][0][key])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    with pytest.raises(InputError, match="training-state"):
        load_model(tmp_path / "state.safetensors")  # a state is not a model file


def test_inpainting_pair_and_export(tmp_path):
    ae_path, den_path = _save_pair(tmp_path)
    ae, den = load_inpainting_pair(den_path)
    assert ae.kind == "autoencoder" and den.kind == "denoiser" and ae.extra["latent_scale"] == 2.0
    # export elsewhere: the reference is rewritten relative to the new folder
    out = export_model(den_path.parent, tmp_path / "ship" / "denoiser.safetensors", half=True)
    ae2, den2 = load_inpainting_pair(out)
    _assert_same_weights(ae.model, ae2.model)
    # ... or ship the autoencoder beside it
    out = export_model(den_path, tmp_path / "ship2" / "denoiser.safetensors",
                       autoencoder_out=tmp_path / "ship2" / "autoencoder.safetensors")
    assert load_model(out).extra["autoencoder"]["file"] == "autoencoder.safetensors"
    ae3, _ = load_inpainting_pair(out)
    _assert_same_weights(ae.model, ae3.model)


def test_inpainting_pair_detects_a_changed_or_missing_autoencoder(tmp_path):
    ae_path, den_path = _save_pair(tmp_path)
    save_model(ae_path, _den(), kind="denoiser", config={"model": DEN_CFG})  # overwritten by something else
    with pytest.raises(InputError, match="sha256"):
        load_inpainting_pair(den_path)
    ae_path.unlink()
    with pytest.raises(InputError, match="not found"):
        load_inpainting_pair(den_path)


# -- integrity: checksum, pickles, truncation, tampering -------------------------------------------
def test_saved_files_carry_a_checksum_that_load_verifies(tmp_path):
    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    assert meta[CHECKSUM_KEY] == content_digest(tensors, meta)
    assert load_model(path).metadata["checksum"] == "sha256 verified"


def test_tampered_config_is_refused(tmp_path):
    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    _rewrite_metadata(path, reseal=False, extra=json.dumps({"latent_scale": 99.0}))
    with pytest.raises(InputError, match="checksum mismatch") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_flipped_tensor_byte_is_refused(tmp_path):
    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0x01  # inside the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum mismatch"):
        load_model(path)


def test_truncated_file_is_refused(tmp_path):
    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated") as err:
        load_model(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "model.safetensors"])
def test_pickles_are_refused_before_unpickling(tmp_path, name):
    marker = tmp_path / "code_ran"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / name
    torch.save({"weights": torch.zeros(2), "payload": Payload()}, path)
    with pytest.raises(InputError, match="pickle") as err:
        load_model(path)
    assert str(path) in str(err.value) and not marker.exists()


@pytest.mark.parametrize("channels,words", [
    ([8, 2**20], "larger than anything"),  # ~10^12 parameters if it were built
    ([8, 4000], "do not match"),  # plausible size: built on the meta device, compared, refused
])
def test_huge_layers_in_a_consistent_config_are_refused_without_allocating(tmp_path, channels, words):
    import tracemalloc

    path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG})
    _rewrite_metadata(path, config=json.dumps({"model": {**AE_CFG, "channels": channels}}))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=words):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # [8, 4000] built for real would be ~1 GiB of float32 weights


def test_shipped_models_load_with_their_pinned_checksum():
    from ldm_med.checkpoint import MODELS_DIR, SHIPPED_SHA256

    for name in SHIPPED_SHA256:
        model = load_model(MODELS_DIR / name)
        assert model.metadata["checksum"] in ("shipped file, sha256 pinned", "sha256 verified")


def test_a_safetensors_header_length_starting_with_pickles_opcode_loads(tmp_path):
    """A safetensors file starts with its header length; when that length's low byte is 0x80 (pickle's
    PROTO opcode) the file must still load (seen in CI: a model file refused as a pickle)."""
    for pad in range(512):
        path = save_model(tmp_path / "ae.safetensors", _ae(), kind="autoencoder", config={"model": AE_CFG},
                          extra={"latent_scale": 1.0, "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load_model(path).kind == "autoencoder"
