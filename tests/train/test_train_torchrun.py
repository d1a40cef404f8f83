"""A real 2-process DDP run (gloo on CPU) through torchrun: every rank ends with the same weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ldm_med.checkpoint import build_model, load_model, load_state
from ldm_med.train.distributed import weights_digest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ldm_med.train", "autoencoder", "--config", str(ROOT / "configs" / "tiny_autoencoder.yaml"),
           "--out", str(out), "--device", "cpu", "--steps", "4", "--set", "train.sample_every=0", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("ldm-med train autoencoder:") == 1  # only rank 0 talks

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    digests = summary["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]

    # the checkpoint rank 0 saved holds exactly the weights every rank ended with
    state, config, _ = load_state(out / "state.safetensors")
    net = build_model("autoencoder", config["model"])
    net.load_state_dict(state["task"]["gen"]["model"])
    assert weights_digest(net) == digests[0]["model"]
    assert weights_digest(load_model(out).model) == digests[0]["ema"]
    assert state["world_size"] == 2 and "disc" in state["task"]  # the discriminator trained under DDP too
