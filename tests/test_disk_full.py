"""A real full disk (a 64 KiB tmpfs, where the machine lets us mount one): the write fails with one line
naming the output, exit code 1, nothing left behind; a re-run elsewhere gives the same file as a run that
never failed."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ldm_med.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct_gap_dicom"


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the simulated ENOSPC in test_faults.py stands")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("command", ["reconstruct", "convert"])
def test_disk_full_is_one_line_and_leaves_nothing(full_disk, tmp_path, capsys, command):
    def run(out: Path) -> int:
        if command == "convert":
            return main(["convert", str(SAMPLE), str(out)])
        return main(["reconstruct", str(SAMPLE), "-o", str(out), "--method", "linear", "-q"])

    target = full_disk / "out.nii"
    assert run(target) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "No space left" in err[0]
    assert list(full_disk.iterdir()) == []
    assert run(tmp_path / "a.nii") == 0 and run(tmp_path / "b.nii") == 0
    assert (tmp_path / "a.nii").read_bytes() == (tmp_path / "b.nii").read_bytes()


def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path, capsys):
    """A read-only file system (a tmpfs mounted ro): refused up front even as root, exit 2."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        target = mount / "out.nii"
        assert main(["reconstruct", str(SAMPLE), "-o", str(target), "--method", "linear", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(mount) in err[0]
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)
