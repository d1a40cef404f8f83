"""MRC, FITS, TIFF and PNG readers under damaged bytes, truncation and hostile header fields.

Seeds are small valid files written by ldm-med's own writers (``save_volume_as``); each input flips
bytes, cuts the file short, or (MRC) sets the header's sizes and mode to hostile values.
"""
from __future__ import annotations

import struct
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
from harness import check, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from ldm_med.io import describe, load_volume
from ldm_med.volume import Volume

SUFFIXES = {"mrc": ".mrc", "fits": ".fits", "tiff": ".tif", "png": ".png"}
MRC_INTS = st.sampled_from([0, 1, -1, 2, 4, 6, 12, 101, 65535, 2**31 - 1, -(2**31)])


@cache
def _seed(fmt: str) -> bytes:
    from ldm_med.io.write import save_volume_as

    data = (np.arange(6 * 5 * (1 if fmt == "png" else 4)).reshape(6, 5, -1) % 200).astype(np.float32)
    vol = Volume(data=data, affine=np.diag([1.0, 1.0, 2.0, 1.0]), metadata={"modality": "MR"})
    with tempfile.TemporaryDirectory() as tmp:
        return Path(save_volume_as(vol, Path(tmp) / f"seed{SUFFIXES[fmt]}")).read_bytes()


@st.composite
def files(draw, formats: tuple[str, ...]) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(formats))
    raw = bytearray(_seed(fmt))
    if fmt == "mrc" and draw(st.booleans()):  # nx, ny, nz, mode; mx, my, mz at words 7-9
        # word 23 (nsymbt, the extended header size) is left to test_mrc_extended_header_size below
        for word in draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 9]), max_size=3, unique=True)):
            struct.pack_into("<i", raw, 4 * word, draw(MRC_INTS))
    for _ in range(draw(st.integers(0, 4))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return SUFFIXES[fmt], bytes(raw)


def _valid(volume) -> None:
    assert volume.data.ndim == 3 and volume.data.size > 0
    assert np.all(np.isfinite(volume.affine))


def _run(case) -> None:
    suffix, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case{suffix}"
        path.write_bytes(data)
        kind = suffix.strip(".")
        check(f"{kind}:load_volume", lambda: load_volume(path), [path], _valid)
        check(f"{kind}:info", lambda: describe(path), [path])


@fuzz_settings(quick=60)
@given(files(("mrc", "png", "tiff")))
def test_mrc_tiff_png_readers(case):
    _run(case)


@fuzz_settings(quick=40)
@given(files(("fits",)))
def test_fits_reader(case):
    _run(case)


def test_mrc_extended_header_size_is_checked_before_reading():
    raw = bytearray(_seed("mrc"))
    struct.pack_into("<i", raw, 4 * 23, 2**31 - 1)  # nsymbt: 2 GiB of extended header in a 1 kB file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.mrc"
        path.write_bytes(bytes(raw))
        check("mrc:load_volume", lambda: load_volume(path), [path], _valid)
