"""Checkpoint loading (``load_model``) under damaged bytes, truncation, hostile headers and hostile configs.

Hostile configs are written with a matching checksum (as a careful attacker would), so they reach the
network builder: it must refuse them without allocating the layers they ask for.
"""
from __future__ import annotations

import json
import struct
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from harness import check, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save as save_bytes

from ldm_med.checkpoint import CHECKSUM_KEY, content_digest, save_model
from ldm_med.nets.refiner import SliceGapRefiner

CONFIG = {"model": {"channels": 4, "depth": 2}}
HOSTILE = st.sampled_from([0, -1, 2**31, 2**20, 10**30, 1.5, float("nan"), "x", None, [], {}, True])


@lru_cache(maxsize=1)
def _model_file() -> tuple[bytes, dict, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        path = save_model(Path(tmp) / "r.safetensors", SliceGapRefiner(4, 2), kind="refiner", config=CONFIG)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
        return path.read_bytes(), meta, tensors


@st.composite
def checkpoints(draw) -> bytes:
    raw, meta, tensors = _model_file()
    kind = draw(st.sampled_from(["bytes", "bytes", "header-length", "config", "metadata"]))
    if kind == "config":  # consistent file, hostile network settings
        model = dict(CONFIG["model"])
        model[draw(st.sampled_from(["channels", "depth", "extra"]))] = draw(HOSTILE)
        meta = {**meta, "config": json.dumps({"model": model})}
        meta[CHECKSUM_KEY] = content_digest(tensors, meta)
        return save_bytes(tensors, metadata=meta)
    if kind == "metadata":  # hostile header values, resealed
        key = draw(st.sampled_from(["format", "format_version", "kind", "config", "extra"]))
        meta = {**meta, key: draw(st.sampled_from(["", "9", "[]", "{", "null", "refiner", "1e999",
                                                   "[" * 5000, "training-state"]))}
        meta[CHECKSUM_KEY] = content_digest(tensors, meta)
        return save_bytes(tensors, metadata=meta)
    raw = bytearray(raw)
    if kind == "header-length":
        struct.pack_into("<Q", raw, 0, draw(st.sampled_from([0, 1, 2**63, 2**32, len(raw), 10**8])))
    for _ in range(draw(st.integers(0, 4))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@fuzz_settings(quick=80)
@given(checkpoints())
def test_checkpoint_loading(data):
    from ldm_med.checkpoint import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(data)
        check("checkpoint", lambda: load_model(path), [path])
