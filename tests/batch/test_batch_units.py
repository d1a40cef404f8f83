"""Small pieces of the batch runner: names, UIDs, stored values, shares, decisions, progress."""
from __future__ import annotations

import numpy as np
import pydicom
from conftest import run_cli
from dicom_synth import phantom, rotation, write_ct_series
from pydicom.dataset import Dataset

from ldm_med.batch import shard
from ldm_med.batch.derived import stored_range, to_stored
from ldm_med.batch.naming import derive_uid, indices_text, safe_name
from ldm_med.batch.plan import discover


def test_safe_names_and_uids():
    assert safe_name("../../x") == "x" and safe_name("/etc/passwd") == "etc_passwd"
    assert len(safe_name("A" * 300)) == 16 and safe_name("") == "x"
    uid = derive_uid("a", "b")
    assert uid == derive_uid("a", "b") != derive_uid("ab", "")
    assert uid.startswith("2.25.") and len(uid) <= 64 and pydicom.uid.UID(uid).is_valid
    assert indices_text([3, 7, 8, 9, 10]) == "3,7-10" and indices_text([]) == "none"


def test_stored_values_are_rounded_and_clipped_to_bits_stored():
    ds = Dataset()
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, 12, 0
    assert stored_range(ds) == (0, 4095)
    out = to_stored(np.array([[-5000.0, 0.4, 1.6, 1e9, np.nan]]), 2.0, -1000.0, ds)
    assert out.dtype == np.uint16 and out.tolist() == [[0, 500, 501, 4095, 0]]
    ds.PixelRepresentation = 1
    assert stored_range(ds) == (-2048, 2047)
    assert to_stored(np.array([[-1e6, 1e6]]), 1.0, 0.0, ds).tolist() == [[-2048, 2047]]


def test_shares_are_balanced_and_deterministic():
    costs = [10, 9, 8, 1, 1, 1]
    ranks = shard.assign(costs, 2)
    assert ranks == shard.assign(costs, 2)
    loads = [sum(c for c, r in zip(costs, ranks) if r == k) for k in (0, 1)]
    assert max(loads) == 17 and shard.assign(costs, 1) == [0] * 6  # 17: the best split


def test_mixed_orientation_and_4d_are_refused(tmp_path):
    hu = phantom((16, 16, 6)).astype(float)
    uid = pydicom.uid.generate_uid()
    write_ct_series(tmp_path / "in" / "mixed", hu, series_uid=uid)
    r = rotation((1, 0, 0), 30)
    write_ct_series(tmp_path / "in" / "mixed", hu, series_uid=uid, name="tilted",
                    iop=tuple(r[:, 0]) + tuple(r[:, 1]))
    four = pydicom.uid.generate_uid()
    write_ct_series(tmp_path / "in" / "4d", hu, series_uid=four, name="t0")
    write_ct_series(tmp_path / "in" / "4d", hu + 1, series_uid=four, name="t1")
    plan = discover(tmp_path / "in")
    codes = sorted((p.decision, p.reason_code) for p in plan.series)
    assert codes == [("refused", "4d"), ("refused", "mixed_orientation"),
                     ("refused", "mixed_orientation")]


def test_progress_lines_with_per_series_timing(tree, tmp_path, capsys):
    assert run_cli(f"{tree['root']}/oblique", tmp_path / "out", "--method", "linear") == 0
    err = capsys.readouterr().err  # not a terminal: plain lines, no control characters
    assert "series 1 [" in err and "repaired 1 slice(s) (" in err and " s)" in err
    assert "series: 1/1" in err and "\r" not in err and "\x1b" not in err


def test_resume_with_other_settings_is_refused(tree, tmp_path, capsys):
    src, out = f"{tree['root']}/oblique", tmp_path / "out"
    assert run_cli(src, out, "--method", "linear", "-q") == 0
    assert run_cli(src, out, "--method", "linear", "-q", "--resume") == 0
    assert "already finished" not in capsys.readouterr().err  # -q: nothing printed
    assert run_cli(src, out, "--method", "cubic", "-q", "--resume") == 2
    assert "other settings" in capsys.readouterr().err
