"""Faults during a run: disk full, read-only or unreadable places, SIGTERM and Ctrl-C.

The run stops with one line and an exit code (1 for a fault, 2 for bad input, 130/143 for a stop), and
leaves no partial output. Disk full is simulated (nibabel's write fails with ENOSPC after writing part of
the file): mounting a small tmpfs needs privileges a test cannot assume.
"""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ldm_med
from ldm_med.cli import main
from ldm_med.data.phantoms import ct_body
from ldm_med.io import save_nifti


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "ct.nii.gz"
    save_nifti(ct_body(shape=(24, 20, 8), spacing=(1.0, 1.0, 2.0), seed=3), path)
    return path


def _argv(scan: Path, out: Path) -> list[str]:
    return ["reconstruct", str(scan), "-o", str(out), "--missing", "3", "--method", "linear", "-q"]


def test_disk_full_while_writing_leaves_nothing(tmp_path, capsys, scan, monkeypatch):
    real_save = nib.save

    def full_disk(img, filename):
        real_save(img, filename)  # part of the bytes reach the disk...
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))  # ...then the disk is full

    monkeypatch.setattr(nib, "save", full_disk)
    out = tmp_path / "out" / "r.nii.gz"
    assert main(_argv(scan, out)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err
    assert not out.exists() and list(out.parent.iterdir()) == []  # no temporary file left either
    monkeypatch.setattr(nib, "save", real_save)
    assert main(_argv(scan, out)) == 0  # a re-run finishes the job


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders and reads anything")
def test_read_only_output_folder_and_unreadable_input(tmp_path, capsys, scan):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(_argv(scan, locked / "r.nii.gz")) == 2
        assert "not a writable folder" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes(scan.read_bytes())
    secret.chmod(0)
    assert main(_argv(secret, tmp_path / "r.nii.gz")) == 2
    assert "permission denied" in capsys.readouterr().err


def test_input_deleted_before_reading(tmp_path, capsys, scan):
    gone = tmp_path / "gone.nii.gz"
    gone.write_bytes(scan.read_bytes())
    gone.unlink()
    assert main(_argv(gone, tmp_path / "r.nii.gz")) == 2
    err = capsys.readouterr().err
    assert str(gone) in err and "no such file" in err


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_stop_during_reconstruct_leaves_no_output(tmp_path, capsys, scan, monkeypatch, stop):
    def interrupted(volume, missing, options, progress=None):
        if stop == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(ldm_med, "reconstruct", interrupted)
    old = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "r.nii.gz"
    try:
        if stop == "sigterm":
            with pytest.raises(SystemExit) as ended:
                main(_argv(scan, out))
            assert ended.value.code == 128 + signal.SIGTERM
        else:
            assert main(_argv(scan, out)) == 130
            assert "interrupted" in capsys.readouterr().err
    finally:
        signal.signal(signal.SIGTERM, old)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_dicom_slice_deleted_between_scan_and_read(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "io"))
    from dicom_synth import phantom, write_ct_series

    from ldm_med.io.dicom import read_series, scan_dicom_folder

    written = write_ct_series(tmp_path / "s", phantom((10, 8, 5)).astype(np.float64))
    series, _ = scan_dicom_folder(tmp_path / "s")
    written.paths[2].unlink()  # gone mid-run
    vol = read_series(series[0])
    assert vol.acquired.tolist() == [True, True, False, True, True]
    assert any("slice(s) [2] marked missing" in w for w in vol.metadata["warnings"])
