"""A second batch run into the OUT_DIR of an earlier one replaces nothing unless told: --resume finishes
it, --overwrite redoes it, no flag is refused with one line."""
from __future__ import annotations

import hashlib

from conftest import run_cli


def _digest(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.sqlite"}


def test_a_second_run_needs_resume_or_overwrite(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(tree["root"], out, "--method", "linear", "-q") in (0, 1)
    before = _digest(out)
    capsys.readouterr()
    assert run_cli(tree["root"], out, "--method", "linear", "-q") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0]
    assert _digest(out) == before
    assert run_cli(tree["root"], out, "--method", "linear", "-q", "--overwrite") in (0, 1)
    assert _digest(out).keys() == before.keys()
