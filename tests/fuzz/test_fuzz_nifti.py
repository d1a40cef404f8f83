"""NIfTI reader under mutated headers, truncation, empty files and gzip garbage (load_volume, info)."""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
from harness import check, fuzz_settings
from hostile import NIFTI_FIELDS, patch_nifti, small_nifti_bytes
from hypothesis import given
from hypothesis import strategies as st

from ldm_med.io import describe, load_volume

NAN, INF = float("nan"), float("inf")
INTS = st.sampled_from([0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 256, 32767, -32768, 65535 - 65536])
FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, NAN, INF, -INF, 1e-9, 1e9, 1e38, -1e38, 352.0,
                                    348.0, 2.5]), st.floats(width=32))
DATATYPES = st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048,
                             2304, 7, 3, 9999, -1])


def _value(name: str, draw):
    fmt = NIFTI_FIELDS[name][1]
    n = int(fmt[1:-1]) if fmt[1:-1] else 1
    kind = FLOATS if fmt.endswith("f") else (DATATYPES if name == "datatype" else INTS)
    if name == "dim":  # ndim first, then sizes: mostly small and plausible, sometimes absurd
        sizes = st.one_of(st.integers(1, 12), INTS, st.just(32767))
        return (draw(st.integers(-1, 8)),) + tuple(draw(sizes) for _ in range(7))
    values = tuple(draw(kind) for _ in range(n))
    return values if n > 1 else values[0]


@st.composite
def nifti_files(draw) -> tuple[str, bytes]:
    """(file name, bytes): a small valid image with some header fields, bytes or length mutated."""
    kind = draw(st.sampled_from(["mutated"] * 6 + ["empty", "random", "gzip-garbage", "truncated-gzip"]))
    gz = draw(st.booleans())
    name = "case.nii.gz" if gz else "case.nii"
    if kind == "empty":
        return name, b""
    if kind == "random":
        return name, draw(st.binary(min_size=1, max_size=600))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(draw(st.integers(2, 4))))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.int32]))
    raw = small_nifti_bytes(shape=shape, dtype=dtype, seed=draw(st.integers(0, 3)))
    if kind == "gzip-garbage":
        return "case.nii.gz", b"\x1f\x8b\x08\x00" + draw(st.binary(max_size=300))
    fields = draw(st.lists(st.sampled_from(sorted(NIFTI_FIELDS)), max_size=4, unique=True))
    raw = patch_nifti(raw, **{f: _value(f, draw) for f in fields})
    for _ in range(draw(st.integers(0, 3))):  # stray bytes anywhere in header and data
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    data = gzip.compress(raw, mtime=0) if gz else raw
    if kind == "truncated-gzip":
        data = data[: draw(st.integers(0, len(data)))]
    return name, data


def _valid(volume) -> None:
    assert volume.data.ndim == 3 and volume.data.dtype == np.float32 and volume.data.size > 0
    assert np.all(np.isfinite(volume.affine))
    assert all(np.isfinite(s) and s > 0 for s in volume.spacing)
    assert volume.acquired.shape == (volume.data.shape[volume.slice_axis],)


@fuzz_settings(quick=120)
@given(nifti_files())
def test_nifti_reader(case):
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        check("nifti:load_volume", lambda: load_volume(path), [path], _valid)
        check("nifti:info", lambda: describe(path), [path])
