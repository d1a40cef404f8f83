"""torchrun with 2 gloo processes on the CPU: every series processed exactly once, one report."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_share_the_series(tree, linear_run, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([str(torchrun if torchrun.exists() else "torchrun"),
                          "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                          "--master-port", str(_free_port()), "-m", "ldm_med", "batch",
                          str(tree["root"]), str(out), "--method", "linear", "--device", "cpu"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = re.findall(r"\[rank (\d)\] series \d+ \[([0-9a-f]{16})\]: (\w+)", run.stderr)
    per_key = Counter(key for _rank, key, _what in lines)
    report = json.loads((out / "report.json").read_text())
    keys = {s["key"] for s in report["series"]}
    assert set(per_key) == keys and set(per_key.values()) == {1}  # each series exactly once
    assert {rank for rank, _k, what in lines if what == "repaired"} == {"0", "1"}
    assert report["run"]["ranks"] == 2 and len(report["series"]) == 9
    assert [p.name for p in out.glob("report*.json")] == ["report.json"]
    assert report["summary"]["repaired"] == linear_run["report"]["summary"]["repaired"]
    ranks = sqlite3.connect(out / "manifest.sqlite").execute(
        "SELECT DISTINCT rank FROM series WHERE status = 'done'").fetchall()
    assert sorted(r for (r,) in ranks) == [0, 1]
    same = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "series").rglob("*")
            if p.is_file()}
    ref = {p.relative_to(linear_run["out"]).as_posix(): p.read_bytes()
           for p in (linear_run["out"] / "series").rglob("*") if p.is_file()}
    assert same == ref  # the same outputs as one process
