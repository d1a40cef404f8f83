"""A batch run stopped mid-way (SIGTERM, then SIGKILL) and resumed ends byte-identical to a run that
was never interrupted; SIGTERM leaves no partial series behind."""
from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dicom_synth import phantom, write_ct_series

N_SERIES = 4
FLAGS = ["--refine", "adapt", "--adapt-steps", "10", "--device", "cpu", "-q"]


def _cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ldm_med", "batch", str(src), str(out), *FLAGS, *extra]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _done_rows(out: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True, timeout=1)
        n = db.execute("SELECT COUNT(*) FROM series WHERE status = 'done'").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


def _stop_after(src: Path, out: Path, n_done: int, sig: int, resume: bool) -> tuple[int, int]:
    """Start a run, send ``sig`` once ``n_done`` series are finished; (exit code, done at kill)."""
    proc = subprocess.Popen(_cmd(src, out, *(["--resume"] if resume else [])), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _done_rows(out) < n_done and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    at_kill = _done_rows(out)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode, at_kill


@pytest.mark.slow
def test_sigterm_then_sigkill_then_resume_is_byte_identical(tmp_path):
    src = tmp_path / "in"
    hu = phantom((32, 32, 12))
    for i in range(N_SERIES):
        write_ct_series(src / f"s{i}", hu + 10 * i, drop=(3, 7 + i % 3))
    ref = tmp_path / "reference"
    subprocess.run(_cmd(src, ref), env=_env(), check=True, timeout=300)

    out = tmp_path / "out"
    code, at_kill = _stop_after(src, out, 1, signal.SIGTERM, resume=False)
    assert code == 143 and 1 <= at_kill < N_SERIES
    leftovers = [p.name for p in (out / "series").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # SIGTERM removed the series in progress
    code, at_kill = _stop_after(src, out, at_kill + 1, signal.SIGKILL, resume=True)
    assert code == -signal.SIGKILL and at_kill < N_SERIES
    done = subprocess.run(_cmd(src, out, "--resume"), env=_env(), timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _digest(out / "series") == _digest(ref / "series")
    assert not [p for p in (out / "series").iterdir() if p.name.startswith(".")]
    db = sqlite3.connect(out / "manifest.sqlite")
    assert db.execute("SELECT COUNT(*) FROM series WHERE status = 'done'").fetchone()[0] == \
        N_SERIES
