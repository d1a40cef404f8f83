"""A series whose reconstruction would not fit in memory is refused before it starts (reported, the run
goes on), instead of the whole batch being killed by the kernel."""
from __future__ import annotations

import json

from conftest import run_cli


def test_a_series_over_the_memory_cap_is_refused_and_reported(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_MED_MAX_BYTES", "64K")  # reads fit; reconstructions do not
    out = tmp_path / "out"
    assert run_cli(tree["root"], out, "--method", "linear", "-q") == 0  # refusals are reported, not errors
    report = json.loads((out / "report.json").read_text())
    refused = [s for s in report["series"] if "the reconstruction would need" in str(s.get("reason"))]
    assert refused and all(s["status"] == "refused" for s in refused)
    assert not list(out.rglob("*.nii.gz")) and not list(out.rglob("*.dcm"))  # nothing half-made
