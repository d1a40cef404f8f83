"""DICOM reader under mutated headers, wrong VRs, truncated pixel data, absurd sizes and wrong byte order.

Each input is a folder of three pydicom-written CT slices (``dicom_synth``), of which one or all carry
the same mutation: element values set to hostile ones before writing, then raw-byte damage (a VR
replaced, bytes flipped, the file cut short, the transfer syntax UID swapped for one of the same length:
big endian or RLE, so the bytes no longer match what the header claims). Targets: ``load_volume`` of
the folder, of the first file, and ``describe`` (``ldm-med info``).
"""
from __future__ import annotations

import itertools
import struct
import tempfile
from pathlib import Path
from unittest import mock

import dicom_synth
import numpy as np
import pydicom
from dicom_synth import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, write_ct_series
from harness import check, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from ldm_med.io import describe, load_volume
from ldm_med.io.dicom_headers import quiet

HOSTILE = {
    "Rows": [0, 1, 2, 65535, 4096], "Columns": [0, 1, 65535, 3000],
    "NumberOfFrames": ["0", "-1", "2", "3", "65535", "999999999", "abc", "1e400"],
    "BitsAllocated": [0, 1, 7, 8, 12, 32, 64, 65535], "BitsStored": [0, 1, 16, 33],
    "HighBit": [0, 31, 65535], "PixelRepresentation": [0, 1, 2],
    "SamplesPerPixel": [0, 2, 3, 65535],
    "PhotometricInterpretation": ["RGB", "YBR_FULL", "", "PALETTE COLOR"],
    "PixelSpacing": [["0", "0"], ["-1", "1"], ["nan", "1"], ["1e-9", "1"], ["1e30", "1"], ["1"],
                     ["inf", "1"]],
    "ImagePositionPatient": [["nan", "0", "0"], ["1e30", "0", "0"], ["0", "0"], ["1e308", "1e308", "1e308"]],
    "ImageOrientationPatient": [["0"] * 6, ["1", "0", "0", "1", "0", "0"], ["2", "0", "0", "0", "2", "0"],
                                ["nan", "0", "0", "0", "1", "0"], ["1", "0", "0"]],
    "SliceThickness": ["0", "-5", "nan", "1e30"], "SpacingBetweenSlices": ["0", "-2.5", "1e-9", "1e12"],
    "RescaleSlope": ["0", "nan", "inf", "-1e30", "abc"], "RescaleIntercept": ["nan", "1e308"],
    "InstanceNumber": ["-1", "999999999999"], "SeriesInstanceUID": ["", "1.2"],
    "ImageType": [["LOCALIZER"], ["ORIGINAL", "PRIMARY", "PROJECTION IMAGE"], []],
    "GridFrameOffsetVector": [["0", "1"], ["nan"], ["0", "1e30", "5"]],
    "SOPClassUID": ["1.2.840.10008.1.3.10", "", "1.2.840.10008.5.1.4.1.1.88.11"],
}
SWAPS = [b"1.2.840.10008.1.2.2\x00", b"1.2.840.10008.1.2.5\x00"]  # big endian, RLE: same length as 1.2.1
EXPLICIT_LE = b"1.2.840.10008.1.2.1\x00"
SECRETS = [*PATIENT_NAME.split("^"), PATIENT_ID, BIRTH_DATE]  # never in a message or a report


@st.composite
def dicom_cases(draw):
    edits = draw(st.dictionaries(st.sampled_from(sorted(HOSTILE)), st.none(), max_size=3))
    edits = {k: draw(st.sampled_from(HOSTILE[k])) for k in edits}
    return {
        "edits": edits, "all_files": draw(st.booleans()),
        "vr": draw(st.one_of(st.none(), st.tuples(st.integers(0, 60), st.sampled_from(
            [b"ZZ", b"\x00\x00", b"SQ", b"UN", b"OB", b"US", b"FD", b"AT"])))),
        "flips": draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3)),
        "cut": draw(st.one_of(st.none(), st.floats(0, 1))),
        "swap": draw(st.one_of(st.none(), st.sampled_from(SWAPS))),
        "frames": draw(st.sampled_from([1, 1, 1, 2])),
    }


def _element_starts(raw: bytes) -> list[int]:
    """Offsets of explicit-VR element headers after the preamble (a tag followed by two capitals)."""
    out = []
    for i in range(132, len(raw) - 6):
        vr = raw[i + 4:i + 6]
        if vr.isalpha() and vr.isupper() and struct.unpack_from("<H", raw, i)[0] % 2 == 0 or \
                (raw[i + 4:i + 6] in (b"OB", b"OW", b"SQ", b"UN")):
            out.append(i)
    return out


def _damage(path: Path, case: dict) -> None:
    raw = bytearray(path.read_bytes())
    if case["vr"] is not None:
        starts = _element_starts(bytes(raw))
        if starts:
            at = starts[case["vr"][0] % len(starts)]
            raw[at + 4:at + 6] = case["vr"][1]
    for where, byte in case["flips"]:
        raw[min(len(raw) - 1, int(where * len(raw)))] = byte
    if case["swap"] is not None:
        at = raw.find(EXPLICIT_LE)
        if at > 0:
            raw[at:at + len(EXPLICIT_LE)] = case["swap"]
    if case["cut"] is not None:
        raw = raw[: int(case["cut"] * len(raw))]
    path.write_bytes(bytes(raw))


def _write(folder: Path, case: dict) -> list[Path]:
    hu = (np.arange(6 * 5 * 3).reshape(6, 5, 3) % 50 - 20).astype(np.float64)
    counter = itertools.count(1)
    with mock.patch.object(dicom_synth, "generate_uid", lambda: f"2.25.{next(counter)}"):  # same bytes
        written = write_ct_series(folder, hu, pixel_spacing=(0.8, 0.7), dz=2.5)
    paths = [written.paths[k] for k in sorted(written.paths)]
    with quiet():  # pydicom warns about every hostile value it is asked to write
        _mutate(paths, case)
    return paths


def _mutate(paths: list[Path], case: dict) -> None:
    for i, path in enumerate(paths):
        if i and not case["all_files"]:
            break
        ds = pydicom.dcmread(path)
        if case["frames"] > 1:
            ds.NumberOfFrames = case["frames"]
            ds.PixelData = ds.PixelData * case["frames"]
        for key, value in case["edits"].items():
            try:
                setattr(ds, key, value)
            except (ValueError, TypeError, OverflowError):
                pass
        try:
            ds.save_as(path, enforce_file_format=False)
        except Exception:  # noqa: BLE001 - pydicom refused to write the value: keep the clean file
            pass
        _damage(path, case)


def _valid(volume) -> None:
    assert volume.data.ndim == 3 and volume.data.dtype == np.float32 and volume.data.size > 0
    assert np.all(np.isfinite(volume.affine))
    assert all(np.isfinite(s) and s > 0 for s in volume.spacing)
    assert volume.acquired.any()


@fuzz_settings(quick=60)
@given(dicom_cases())
def test_dicom_reader(case):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        paths = _write(folder, case)
        names = [folder, *paths]
        check("dicom:load_volume(folder)", lambda: load_volume(folder), names, _valid, SECRETS)
        check("dicom:load_volume(file)", lambda: load_volume(paths[0]), names, _valid, SECRETS)
        check("dicom:info", lambda: describe(folder, series="1"), names, secrets=SECRETS)
