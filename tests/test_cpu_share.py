"""Thread sharing between concurrent ldm-med processes (``ldm_med.io.limits.CpuShare``)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ldm_med.errors import InputError
from ldm_med.io import limits


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "_REGISTRY", tmp_path / "procs")
    monkeypatch.setattr(limits, "cpu_cores", lambda: 8)
    for key in ("LDM_MED_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path / "procs"


def test_cores_are_split_between_running_processes_and_returned(registry):
    share = limits.CpuShare()
    assert share.fair() == 8  # alone
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (registry / str(other.pid)).touch()  # a second ldm-med process starts
        assert share.fair() == 4
        (registry / "999999999").touch()  # a marker left by a process that died: removed, not counted
        assert share.fair() == 4 and not (registry / "999999999").exists()
    finally:
        other.kill()
        other.wait()
    assert share.fair() == 8  # the other one ended
    share.close()
    assert not any(registry.iterdir())


def test_explicit_environment_and_torchrun_rules(registry, monkeypatch):
    assert limits.CpuShare(3).fair() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert limits.CpuShare().fair() == 2
    monkeypatch.setenv("LDM_MED_THREADS", "5")
    assert limits.CpuShare().fair() == 5
    monkeypatch.delenv("LDM_MED_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    share = limits.CpuShare()
    assert share.fair() == 2 and share.marker is None
    with pytest.raises(InputError, match="--threads"):
        limits.CpuShare(0)


def test_rebalance_waits_between_recounts(registry, monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    share = limits.CpuShare()
    seen = []
    progress = share.wrap(lambda *a: seen.append(a))
    share.apply()
    progress("stage", 1, 2)  # within REBALANCE_SECONDS: no recount
    assert calls == [8] and seen == [("stage", 1, 2)]
    share._last -= limits.REBALANCE_SECONDS
    (registry / str(1)).touch()  # pid 1 is alive: a second process
    progress("stage", 2, 2)
    assert calls == [8, 4]
    share.close()


def test_reconstruct_memory_estimate_grows_with_thin_slices():
    base = limits.reconstruct_bytes((100, 100, 50), (1.0, 1.0, 1.0), 2, samples=1)
    assert limits.reconstruct_bytes((100, 100, 50), (1.0, 1.0, 0.01), 2, samples=1) == 100 * base
    assert limits.reconstruct_bytes((100, 100, 50), (1.0, 1.0, 1.0), 2, samples=5) > base
