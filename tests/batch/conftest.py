"""Fixtures for the batch tests: a generated DICOM tree with every kind of file a PACS export holds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))  # dicom_synth
sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_tree import make_tree  # noqa: E402


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> dict:
    """The mixed tree (written once per session; tests never write into it)."""
    root = tmp_path_factory.mktemp("tree") / "in"
    return make_tree(root)


def run_cli(*args: str) -> int:
    from ldm_med.cli import main

    return main(["batch", *map(str, args)])


@pytest.fixture(scope="session")
def linear_run(tree, tmp_path_factory) -> dict:
    """One run over the tree with linear interpolation (the model is not the point here)."""
    out = tmp_path_factory.mktemp("linear") / "out"
    code = run_cli(tree["root"], out, "--method", "linear", "-q")
    import json

    report = json.loads((out / "report.json").read_text())
    by_first = {s["first_file"].split("/")[-2] if "/" in s["first_file"] else s["first_file"]: s
                for s in report["series"]}
    return {"out": out, "code": code, "report": report, "by_folder": by_first}
