"""DICOM series written by the tests from a phantom: gaps, orientation, rescale, duplicates..."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_synth import (
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    phantom,
    rotation,
    write_ct_series,
    write_enhanced_ct,
)

from ldm_med.errors import InputError
from ldm_med.io import describe, load_volume
from ldm_med.io import dicom_series as series_mod
from ldm_med.io.dicom import read_series, scan_dicom_folder

HU = phantom((24, 20, 12))


def oblique_iop() -> np.ndarray:
    r = rotation((0.3, 1.0, 0.5), 27.0)
    return np.concatenate([r[:, 0], r[:, 1]])


def assert_matches_phantom(vol, hu, missing):
    expected_acq = np.ones(hu.shape[2], dtype=bool)
    expected_acq[list(missing)] = False
    np.testing.assert_array_equal(vol.acquired, expected_acq)
    np.testing.assert_array_equal(vol.data[:, :, expected_acq], hu[:, :, expected_acq])
    assert not vol.data[:, :, ~expected_acq].any()  # filled with zeros


@pytest.mark.parametrize("oblique", [False, True])
def test_removed_slices_come_back_marked_missing(tmp_path, oblique):
    iop = oblique_iop() if oblique else (1, 0, 0, 0, 1, 0)
    drop = (3, 7, 8)
    w = write_ct_series(tmp_path / "s", HU, iop=iop, drop=drop, shuffle=True, seed=4)
    vol = load_volume(tmp_path / "s")
    assert vol.shape == HU.shape
    assert_matches_phantom(vol, HU, drop)
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5))
    assert vol.slice_axis == 2
    assert vol.metadata["modality"] == "CT"
    assert vol.metadata["rescale"]["type"] == "HU"
    uids = vol.metadata["sop_instance_uids"]
    assert [u is None for u in uids] == [k in drop for k in range(12)]
    assert all(uids[k] == w.sop_uids[k] for k in w.sop_uids)
    # world position of every written slice's voxels, from the header values directly
    for k in (0, 5, 11):
        for i, j in ((0, 0), (23, 0), (7, 19)):
            lps = w.world_lps(i, j, k)
            np.testing.assert_allclose(vol.world([i, j, k]), [-lps[0], -lps[1], lps[2]],
                                       atol=1e-4)


def test_slope_and_per_slice_intercepts_give_hu(tmp_path):
    write_ct_series(tmp_path, HU, slope=0.5, intercept=-1024, intercepts={4: -2048, 9: -512})
    vol = load_volume(tmp_path)
    assert_matches_phantom(vol, HU, ())
    assert vol.metadata["rescale"]["varies"]
    assert vol.metadata["rescale"]["per_slice"][4] == (0.5, -2048.0)


def test_duplicate_slice_keeps_first_and_is_reported(tmp_path):
    w = write_ct_series(tmp_path, HU)
    dup = pydicom.dcmread(w.paths[5])
    dup.SOPInstanceUID = dup.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dup.InstanceNumber = 99
    dup.PixelData = np.zeros_like(dup.pixel_array).tobytes()
    dup.save_as(tmp_path / "zz_dup.dcm")
    shutil.copy(w.paths[2], tmp_path / "zz_copy_of_2")  # same SOPInstanceUID: an exact copy
    series, skipped = scan_dicom_folder(tmp_path)
    assert len(series) == 1 and any("duplicate slice position" in w for w in series[0].warnings)
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["zz_dup.dcm"].startswith("duplicate slice position")
    assert reasons["zz_copy_of_2"].startswith("duplicate file")
    vol = read_series(series[0])
    assert_matches_phantom(vol, HU, ())  # the first file (lower InstanceNumber) won


def test_4d_like_series_is_refused_and_acquisition_number_splits_repeats(tmp_path):
    uid = pydicom.uid.generate_uid()
    write_ct_series(tmp_path / "a", HU, series_uid=uid, name="a")
    write_ct_series(tmp_path / "b", HU + 5, series_uid=uid, name="b")
    series, _ = scan_dicom_folder(tmp_path)
    assert len(series) == 1 and "repeated acquisitions" in series[0].error
    with pytest.raises(InputError, match="repeated acquisitions"):
        read_series(series[0])
    with pytest.raises(InputError, match="none of the 1 image series"):
        load_volume(tmp_path)

    other = tmp_path.parent / "acq"
    write_ct_series(other, HU, series_uid=uid, name="a", acquisition=1)
    write_ct_series(other, HU + 5, series_uid=uid, name="b", acquisition=2)
    series, _ = scan_dicom_folder(other)
    assert len(series) == 2 and all(s.error is None for s in series)
    assert all("AcquisitionNumber" in s.warnings[0] for s in series)


def test_acquisition_number_changes_without_repeats_do_not_split(tmp_path):
    w = write_ct_series(tmp_path, HU, acquisition=1)
    for k in range(6, 12):  # axial CT numbers each rotation: same volume
        ds = pydicom.dcmread(w.paths[k])
        ds.AcquisitionNumber = 2
        ds.save_as(w.paths[k])
    series, _ = scan_dicom_folder(tmp_path)
    assert len(series) == 1 and series[0].shape == HU.shape


def test_non_uniform_spacing_is_an_error(tmp_path):
    write_ct_series(tmp_path, HU, offsets={k: 1.1 for k in range(6, 12)})
    series, _ = scan_dicom_folder(tmp_path)
    assert any("non-uniform" in w for w in series[0].warnings)
    with pytest.raises(InputError, match="non-uniform slice spacing"):
        read_series(series[0])
    assert "cannot be read as one volume: non-uniform" in describe(tmp_path)


def test_gantry_tilt_warns_and_keeps_world_positions(tmp_path):
    w = write_ct_series(tmp_path, HU, tilt=(0.0, 0.3, 0.0))
    vol = load_volume(tmp_path)
    assert any("gantry tilt" in x for x in vol.metadata["warnings"])
    for k in (0, 11):
        lps = w.world_lps(5, 6, k)
        np.testing.assert_allclose(vol.world([5, 6, k]), [-lps[0], -lps[1], lps[2]], atol=1e-4)


def test_instance_numbers_disagreeing_with_positions_warn(tmp_path):
    write_ct_series(tmp_path, HU, instance_numbers={2: 50, 9: 3})
    vol = load_volume(tmp_path)
    assert any("InstanceNumber" in x for x in vol.metadata["warnings"])
    assert_matches_phantom(vol, HU, ())  # ordered by position regardless


def test_localizers_are_dropped(tmp_path):
    w = write_ct_series(tmp_path, HU)
    loc = pydicom.dcmread(w.paths[0])
    loc.SOPInstanceUID = pydicom.uid.generate_uid()
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.save_as(tmp_path / "scout1")
    ortho = pydicom.dcmread(w.paths[1])
    ortho.SOPInstanceUID = pydicom.uid.generate_uid()
    ortho.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal, same series UID
    ortho.save_as(tmp_path / "scout2")
    series, skipped = scan_dicom_folder(tmp_path)
    assert len(series) == 1 and series[0].n_images == 12
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["scout1"] == "localizer: ImageType LOCALIZER"
    assert reasons["scout2"].startswith("localizer: orientation orthogonal")


def test_enhanced_multiframe_with_a_missing_frame(tmp_path):
    hu = HU[:, :, :6]
    iop = oblique_iop()
    normal = np.cross(iop[:3], iop[3:])
    keep = [0, 1, 3, 4, 5]  # position 2 absent
    positions = [np.array([3.0, -4.0, 7.0]) + 1.5 * k * normal for k in keep]
    intercepts = [-1024.0, -1024.0, -2000.0, -1024.0, -1024.0]
    write_enhanced_ct(tmp_path / "enh.dcm", hu[:, :, keep][:, :, ::-1],
                      positions=positions[::-1], iop=iop, intercepts=intercepts)
    vol = load_volume(tmp_path / "enh.dcm")
    assert_matches_phantom(vol, hu, (2,))
    assert vol.metadata["source_frames"] == [4, 3, None, 2, 1, 0]  # frames were written reversed
    np.testing.assert_allclose(vol.world([0, 0, 0]), positions[0] * [-1, -1, 1], atol=1e-4)


def test_read_time_decode_failure_marks_slice_missing(tmp_path, monkeypatch):
    w = write_ct_series(tmp_path, HU)
    real = series_mod._decode_file

    def flaky(path):
        if path == w.paths[4]:
            raise ValueError("The number of bytes of pixel data is less than expected")
        return real(path)

    monkeypatch.setattr(series_mod, "_decode_file", flaky)
    vol = load_volume(tmp_path)
    assert_matches_phantom(vol, HU, (4,))
    assert any("cannot decode pixel data" in r for _, r in vol.metadata["skipped"])


def test_series_selection(tmp_path):
    write_ct_series(tmp_path / "big", HU, name="big")
    small = write_ct_series(tmp_path / "small", HU[:, :, :4] + 1, name="small")
    series, _ = scan_dicom_folder(tmp_path)
    assert len(series) == 2
    big_idx = next(s.index for s in series if s.n_images == 12)
    small_idx = next(s.index for s in series if s.n_images == 4)
    vol = load_volume(tmp_path)
    assert vol.shape[2] == 12 and vol.metadata["series_index"] == big_idx
    assert "largest" in vol.metadata["series_choice"]
    assert load_volume(tmp_path, series=str(small_idx)).shape[2] == 4
    assert load_volume(tmp_path, series=small.series_uid).shape[2] == 4
    assert load_volume(tmp_path, series=small.series_uid[-10:]).shape[2] == 4
    assert load_volume(small.paths[0]).shape[2] == 4  # a file: its own series
    with pytest.raises(InputError, match="matches no series"):
        load_volume(tmp_path, series="1.2.3.4.5.999")


def test_inputs_never_modified(tmp_path):
    write_ct_series(tmp_path, HU, drop=(2,))

    def digest():
        return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in sorted(tmp_path.iterdir())}

    before = digest()
    load_volume(tmp_path)
    describe(tmp_path, series="1")
    assert digest() == before


def test_reference_header_is_kept_but_never_printed(tmp_path):
    write_ct_series(tmp_path / "Secretname", HU, drop=(1,))  # a folder named after the patient
    (tmp_path / "Secretname" / "notes.txt").write_text("not dicom")
    vol = load_volume(tmp_path)
    ref = vol.metadata["dicom_reference"]
    assert isinstance(ref, pydicom.Dataset)
    assert str(ref.PatientName) == PATIENT_NAME and "PixelData" not in ref
    assert ref.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    for text in (repr(vol), str(vol.metadata)):  # paths are the user's; header values hidden
        for secret in (PATIENT_NAME, "Patientperson", PATIENT_ID, BIRTH_DATE):
            assert secret not in text
    report = describe(tmp_path, series="1", verbose=True)
    for secret in (PATIENT_NAME, "Secretname", "Patientperson", PATIENT_ID, BIRTH_DATE):
        assert secret not in report
    assert "<patient>/notes.txt" in report  # a folder named after the patient is redacted


def test_bad_folders_raise_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_volume(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        load_volume(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("hello")
    (junk / "b.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(InputError) as err:
        load_volume(junk)
    assert "no DICOM image series" in str(err.value) and "\n" not in str(err.value)
    assert str(junk) in str(err.value)


def test_unsupported_file_type(tmp_path):
    p = tmp_path / "scan.nrrd"
    p.write_text("NRRD0004\n")
    with pytest.raises(InputError, match="unsupported file type"):
        load_volume(p)


def test_single_slice_without_geometry_loads_with_warning(tmp_path):
    w = write_ct_series(tmp_path, HU[:, :, :1])
    ds = pydicom.dcmread(w.paths[0])
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.save_as(w.paths[0])
    vol = load_volume(tmp_path)
    assert vol.shape == (24, 20, 1)
    assert any("world position unknown" in x for x in vol.metadata["warnings"])


def test_files_without_geometry_cannot_be_ordered(tmp_path):
    w = write_ct_series(tmp_path, HU[:, :, :3])
    for p in w.paths.values():
        ds = pydicom.dcmread(p)
        del ds.ImagePositionPatient
        ds.save_as(p)
    with pytest.raises(InputError, match="slice order is unknown"):
        load_volume(tmp_path)


@pytest.fixture(autouse=True)
def _no_stray_files(tmp_path):
    yield
    assert not [p for p in Path(tmp_path).rglob("*.tmp*")]
