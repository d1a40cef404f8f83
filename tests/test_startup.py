"""``--help``, ``info`` and ``convert`` never load torch or MONAI (the start-up a user waits for)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DICOM = ROOT / "sample_data" / "ct_gap_dicom"

PROBE = """
import json, sys
from ldm_med.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("torch", "monai", "matplotlib", "skimage") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("args", [
    ["--help"],
    ["info", str(DICOM)],
    ["info", str(ROOT / "sample_data" / "ct_phantom.nii.gz")],
    ["convert", str(DICOM), "{tmp}/ct.nii.gz"],
    ["reconstruct", "--help"],
    ["train", "--help"],
])
def test_light_commands_do_not_import_torch(args, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, out.stderr
    assert result["heavy"] == []


def test_a_default_reconstruction_imports_neither_monai_nor_torch_dynamo(tmp_path):
    """The default path runs the slice-gap refiner only: MONAI (2 s) and torch._dynamo (1 s, what
    torch.optim imports) are start-up it does not need. ``--adapt-steps 1`` keeps the test short while
    still running the fine-tuning (its optimizer included)."""
    out = subprocess.run([sys.executable, "-c", PROBE.replace('"skimage"', '"skimage", "torch._dynamo"'),
                          "reconstruct", str(DICOM), "-o", str(tmp_path / "out.nii.gz"), "-q",
                          "--adapt-steps", "1", "--threads", "1"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         cwd=tmp_path)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, out.stderr
    assert "monai" not in result["heavy"] and "torch._dynamo" not in result["heavy"]
    assert "torch" in result["heavy"]  # the probe sees imports at all


MONAI_PROBE = """
import importlib.util, json, sys
from ldm_med.cli._process import UNUSED_BY_COMMANDS, import_monai
import_monai()
loaded = sorted(m for m in UNUSED_BY_COMMANDS if m in sys.modules)
importable = []
for name in UNUSED_BY_COMMANDS:  # hidden from MONAI only: they still import afterwards
    if importlib.util.find_spec(name.split(".")[0]) is not None:
        importlib.import_module(name)
        importable.append(name)
print(json.dumps({"monai": "monai.networks.nets" in sys.modules, "loaded": loaded, "importable": importable}))
"""


def test_commands_import_monai_without_the_modules_it_loads_for_notebooks():
    out = subprocess.run([sys.executable, "-c", MONAI_PROBE], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["monai"], out.stderr
    assert result["loaded"] == []
    assert "scipy.signal" in result["importable"]


FAULTS_PROBE = """
import json, resource, sys
import torch
from ldm_med.cli._process import keep_freed_memory
torch.set_num_threads(1)
kept = keep_freed_memory() if sys.argv[1] == "1" else None
net = torch.nn.Sequential(torch.nn.Conv2d(8, 32, 3, padding=1), torch.nn.GroupNorm(8, 32), torch.nn.SiLU(),
                          torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(32, 16, 3, padding=1))
x = torch.randn(4, 8, 64, 64)

def faults():  # page faults of five network calls: fresh activation buffers of 2-8 MB each
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        for _ in range(5):
            net(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
print(json.dumps({"kept": kept, "faults": faults()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_freed_buffers_stay_mapped_after_keep_freed_memory():
    """Both runs start with glibc's thresholds at 128 kB (its defaults before it adapts them, which it
    does unpredictably), so without ``keep_freed_memory`` every large buffer goes back to the kernel."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": "131072",
           "MALLOC_TRIM_THRESHOLD_": "131072"}
    runs = {}
    for arg in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", FAULTS_PROBE, arg], capture_output=True, text=True,
                             env=env)
        runs[arg] = json.loads(out.stdout.strip().splitlines()[-1])
    if runs["1"]["kept"] is False:
        pytest.skip("not glibc")
    assert runs["0"]["faults"] > 1000, runs  # the buffers were mapped and zero-filled again every call
    assert runs["1"]["faults"] < runs["0"]["faults"] / 10, runs  # a few hundred remain on a busy machine


def test_bad_input_fails_before_monai_is_imported(tmp_path):
    """A typo in the input costs no MONAI import (the sampling path imports it after the checks)."""
    out = subprocess.run([sys.executable, "-c", PROBE, "reconstruct", str(tmp_path / "missing.nii.gz"),
                          "-o", str(tmp_path / "out.nii.gz"), "--samples", "8"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         cwd=tmp_path)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 2
    assert "monai" not in result["heavy"]


def test_a_sampling_reconstruction_skips_the_modules_monai_would_load(tmp_path):
    """With samples the diffusion model runs (MONAI), yet neither MONAI's notebook, profiling and
    signal imports nor scipy.stats (the map's rank fit has its own ranks) are paid for."""
    probe = PROBE.replace('("torch", "monai", "matplotlib", "skimage")',
                          '("monai", "matplotlib", "pandas", "scipy.signal", "scipy.stats")')
    out = subprocess.run([sys.executable, "-c", probe, "reconstruct", str(DICOM), "-o",
                          str(tmp_path / "out.nii.gz"), "-q", "--samples", "2", "--threads", "1"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         cwd=tmp_path)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, out.stderr
    assert result["heavy"] == ["monai"]
