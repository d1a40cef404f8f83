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
