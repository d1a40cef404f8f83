"""The real DICOM files pydicom ships: a series with a real gap, localizers, DICOMDIRs,
truncated and compressed files, enhanced multi-frame objects.

What ``pydicom/data/test_files/dicomdirtests`` holds (read with pydicom, headers only):

* ``77654033/CT2``: CT "Routine Brain", 4 axial slices at z = -99.48, 103.02, 104.27, 105.52
  (InstanceNumber 18, 180, 181, 182; AcquisitionNumber 4, 44, 45, 45): a 1.25 mm grid with
  a 202.5 mm gap, i.e. slots 1..161 of 165 missing.
* ``98892001/CT5N``: CT "SmartScore", 5 contiguous axial slices 2.5 mm apart (AcquisitionNumber
  1, 1, 1, 2, 2; InstanceNumber decreasing with position).
* ``98892001/CT2N``: two CT scouts, ImageType LOCALIZER (sagittal + coronal).
* ``98892003/MR2``: two "T/S/C RF FAST PILOT" series, each 1 axial + 1 sagittal + 1 coronal image.
* ``98892003/MR1`` + one file in MR2: four single-image "FAST LOCALIZER" series (own UIDs).
* ``98892003/MR700``: 7 MR angio MIPs (ImageType PROJECTION IMAGE), each at its own angle.
* ``77654033/CR1..3``: three CR radiographs (no ImagePositionPatient / orientation).
* 8 DICOMDIR files, 2 READMEs and ``TINY_ALPHA``: 50 CT objects without pixel data.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ldm_med.errors import InputError
from ldm_med.io import dicom_headers as hdr
from ldm_med.io import load_volume
from ldm_med.io.dicom import scan_dicom_folder

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
DICOMDIR_TESTS = TEST_FILES / "dicomdirtests"
COMPRESSED_GREY = ["JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm",
                   "MR_small_RLE.dcm"]


@pytest.fixture(scope="module")
def scanned():
    return scan_dicom_folder(DICOMDIR_TESTS)


def by_desc(series, text):
    hits = [s for s in series if s.description == text]
    assert len(hits) == 1, [s.description for s in series]
    return hits[0]


def test_dicomdirtests_series_are_listed(scanned):
    series, _ = scanned
    descs = sorted(s.description for s in series)
    assert descs == sorted(["Routine Brain", "SmartScore - Gated 0.5 sec", "Cervical LAT",
                            "Cervical OBLI 1", "Cervical OBLI 2"] + ["FAST LOCALIZER"] * 4)
    assert [s.index for s in series] == list(range(1, len(series) + 1))
    smart = by_desc(series, "SmartScore - Gated 0.5 sec")
    assert smart.shape == (16, 16, 5) and smart.acquired.all() and not smart.warnings
    assert smart.spacing == pytest.approx((0.488281, 0.488281, 2.5))


def test_real_gap_is_found(scanned):
    series, _ = scanned
    brain = by_desc(series, "Routine Brain")
    assert brain.error is None and brain.n_files == 4
    assert brain.shape == (16, 16, 165)
    assert brain.spacing[2] == pytest.approx(1.25, abs=1e-4)
    assert brain.missing.tolist() == list(range(1, 162))


def test_gap_series_reads_in_hu_with_geometry(scanned):
    series, _ = scanned
    brain = by_desc(series, "Routine Brain")
    vol = load_volume(DICOMDIR_TESTS, series=str(brain.index))
    assert vol.missing.tolist() == list(range(1, 162))
    assert vol.metadata["modality"] == "CT"
    files = sorted((DICOMDIR_TESTS / "77654033" / "CT2").iterdir())
    for path in files:
        ds = pydicom.dcmread(path)
        k = vol.metadata["sop_instance_uids"].index(ds.SOPInstanceUID)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.data[:, :, k], hu.T)
        ipp = np.array(ds.ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(vol.world([0, 0, k]), ipp * [-1, -1, 1], atol=1e-3)
    assert vol.data[:, :, 1:162].max() == 0


def test_default_series_is_the_largest(scanned):
    vol = load_volume(DICOMDIR_TESTS)
    assert vol.metadata["series_description"] == "SmartScore - Gated 0.5 sec"
    assert "largest" in vol.metadata["series_choice"]


def test_skipped_files_have_reasons(scanned):
    _, skipped = scanned
    reasons = {s.path.relative_to(DICOMDIR_TESTS).as_posix(): s.reason for s in skipped}
    dicomdirs = [p for p in reasons if Path(p).name.startswith("DICOMDIR")]
    assert len(dicomdirs) == 8
    assert all(reasons[p].startswith("DICOMDIR: ") for p in dicomdirs)
    assert reasons["98892001/CT2N/6293"] == "localizer: ImageType LOCALIZER"
    assert reasons["98892001/CT2N/6924"] == "localizer: ImageType LOCALIZER"
    scouts = [p for p in reasons if p.startswith("98892003/MR2/")]
    assert len(scouts) == 6 and all("orthogonal planes" in reasons[p] for p in scouts)
    assert reasons["README.txt"] == "not a DICOM file"
    assert sum(r.startswith("no pixel data") for r in reasons.values()) == 50
    assert sum(r.startswith("projection image") for r in reasons.values()) == 7


def copy_into(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name in names:
        src = TEST_FILES / name if (TEST_FILES / name).exists() else shipped_file(name)
        shutil.copy(src, folder / name)
    return folder


def shipped_file(name: str) -> Path:
    """A pydicom test file, from pydicom itself or the pydicom-data package; never downloaded."""
    try:
        path = get_testdata_file(name, download=False)
    except TypeError:  # pydicom without the download argument
        path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return Path(path)


def test_truncated_file_is_skipped(tmp_path):
    folder = copy_into(tmp_path, "MR_truncated.dcm", "MR_small.dcm")
    series, skipped = scan_dicom_folder(folder)
    assert [s.files[0].name for s in series] == ["MR_small.dcm"]
    assert skipped[0].path.name == "MR_truncated.dcm"
    assert skipped[0].reason.startswith("truncated pixel data")


class _NoDecoder:
    is_available = False
    missing_dependencies = ["gdcm - requires gdcm>=3.0.10",
                            "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]


def test_compressed_files_without_decoder_are_skipped_naming_packages(tmp_path, monkeypatch):
    pytest.importorskip("pydicom.pixels")
    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda uid: _NoDecoder())
    folder = copy_into(tmp_path, *COMPRESSED_GREY, "SC_rgb_rle.dcm", "MR_small.dcm")
    series, skipped = scan_dicom_folder(folder)
    assert [s.files[0].name for s in series] == ["MR_small.dcm"]
    reasons = {s.path.name: s.reason for s in skipped}
    for name in COMPRESSED_GREY:
        ts = pydicom.dcmread(folder / name, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert ts.name in reasons[name] and str(ts) in reasons[name]
        assert 'ldm-med[dicom-codecs]' in reasons[name]
        assert "pylibjpeg" in reasons[name] and "gdcm" in reasons[name]
    # a colour image is skipped as colour first: a decoder would not make it usable
    assert reasons["SC_rgb_rle.dcm"].startswith("colour image")


@pytest.mark.parametrize("name", COMPRESSED_GREY)
def test_compressed_file_real_decoder_path(tmp_path, name):
    """With the installed decoders: the file either loads or is skipped naming the packages."""
    folder = copy_into(tmp_path, name)
    ts = pydicom.dcmread(folder / name, stop_before_pixels=True).file_meta.TransferSyntaxUID
    series, skipped = scan_dicom_folder(folder)
    if hdr.decoder_problem(ts) is not None:  # no decoder installed: the real message
        assert not series and skipped[0].reason == hdr.decoder_problem(ts)
        assert "ldm-med[dicom-codecs]" in skipped[0].reason
    elif series:
        vol = load_volume(folder)
        assert np.isfinite(vol.data).all() and vol.data.any()
    else:  # a decoder exists but cannot decode this file (e.g. Pillow and 12-bit JPEG)
        assert skipped[0].reason.startswith(f"no decoder for {ts.name}")
        assert "ldm-med[dicom-codecs]" in skipped[0].reason


def test_non_image_objects_are_skipped(tmp_path):
    folder = copy_into(tmp_path, "test-SR.dcm", "rtplan.dcm", "rtstruct.dcm", "CT_small.dcm")
    series, skipped = scan_dicom_folder(folder)
    assert len(series) == 1
    assert all(s.reason.startswith("no pixel data") for s in skipped) and len(skipped) == 3


def test_enhanced_ct_frames_become_slices(tmp_path):
    path = shipped_file("eCT_Supplemental.dcm")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(path, folder / "ect")
    vol = load_volume(folder)
    assert vol.shape == (512, 512, 2) and vol.acquired.all()
    assert vol.spacing == pytest.approx((0.388672, 0.388672, 10.0))
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    # frame 1 lies first along the normal (-1, 0, 0) x (0, 1, 0) = (0, 0, -1)
    assert vol.metadata["source_frames"] == [1, 0]
    np.testing.assert_array_equal(vol.data[:, :, 0], frames[1].T - 1024.0)
    np.testing.assert_array_equal(vol.data[:, :, 1], frames[0].T - 1024.0)
    ipp1 = np.array(ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
                    .ImagePositionPatient, dtype=float)
    np.testing.assert_allclose(vol.world([0, 0, 0]), ipp1 * [-1, -1, 1], atol=1e-3)


def test_multiframe_mr_without_positions_stacks_frames_with_a_warning(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shipped_file("emri_small.dcm"), folder / "emri")
    vol = load_volume(folder / "emri")
    assert vol.shape == (64, 64, 10)
    assert vol.spacing[2] == pytest.approx(1.2)  # SpacingBetweenSlices
    assert any("no per-frame positions" in w for w in vol.metadata["warnings"])
    frames = pydicom.dcmread(folder / "emri").pixel_array
    np.testing.assert_array_equal(vol.data[:, :, 3], frames[3].T)


def test_single_dicom_file_outside_a_series_is_refused(tmp_path):
    folder = copy_into(tmp_path, "MR_truncated.dcm", "MR_small.dcm")
    with pytest.raises(InputError, match="truncated pixel data"):
        load_volume(folder / "MR_truncated.dcm")
