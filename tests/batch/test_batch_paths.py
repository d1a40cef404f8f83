"""Batch output paths stay inside OUT_DIR whatever the tags hold (hostile Modality values included)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ldm_med.batch.naming import safe_name
from ldm_med.batch.plan import discover

sys.path.insert(0, str(Path(__file__).parents[1] / "io"))
from dicom_synth import phantom, write_ct_series  # noqa: E402

HOSTILE = ["../../etc", "/etc/passwd", "..", "a\x00b", "C:\\Windows\\x", "A" * 300, "~root", "CT/../../.."]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=400))
def test_safe_name_is_one_harmless_path_part(text):
    name = safe_name(text, 32)
    assert 1 <= len(name) <= 32 and os.sep not in name and name not in (".", "..")
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name)


def test_series_folders_stay_inside_out_dir_for_hostile_tags(tmp_path):
    src = tmp_path / "in"
    for i, value in enumerate(HOSTILE):
        write_ct_series(src / f"s{i}", phantom((8, 8, 4)).astype(np.float64), drop=(1,),
                        extra={"Modality": value, "SeriesDescription": value}, name=f"f{i}_")
    plan = discover(src)
    assert len(plan.series) == len(HOSTILE)
    out = (tmp_path / "out").resolve()
    folders = set()
    for s in plan.series:
        final = (out / s.folder).resolve()
        assert out in final.parents, s.folder
        assert final.parent == out / "series"
        folders.add(final)
    assert len(folders) == len(HOSTILE)  # one folder per series: hostile values never collide
