"""The reader: DICOM folders (one or several series), NIfTI files, and paths it must refuse."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_plugin._reader import get_reader


def _image(path):
    reader = get_reader(str(path))
    assert reader is not None, path
    layers = reader(str(path))
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image"
    return data, kwargs


def test_dicom_folder(samples):
    import ldm_med

    data, kwargs = _image(samples / "ct_gap_dicom")
    volume = ldm_med.load_volume(samples / "ct_gap_dicom")
    assert data.shape == (20, 96, 96)  # axial: slices first, the slider runs over them
    np.testing.assert_array_equal(data, np.transpose(volume.data))
    np.testing.assert_allclose(kwargs["scale"], [2.5, 1.25, 1.25])
    md = kwargs["metadata"]
    assert md["modality"] == "CT" and md["rescale"]["type"] == "HU"
    assert md["missing"] == [8, 15, 16] and md["slice_axis"] == 0
    assert md["acquired"].tolist() == [i not in (8, 15, 16) for i in range(20)]
    assert data[0].min() == -1024.0  # Hounsfield units, not stored values
    assert kwargs["contrast_limits"] == (-160.0, 240.0)
    assert "dicom_reference" not in md  # opaque header objects stay out of the layer


def test_dicom_file_opens_its_series(samples):
    data, kwargs = _image(samples / "ct_gap_dicom" / "CT0001.dcm")
    assert data.shape == (20, 96, 96) and kwargs["metadata"]["missing"] == [8, 15, 16]


def test_nifti_geometry(samples):
    """A voxel lands at its RAS position (as LPS, axes reversed: napari's world is (S, P, L))."""
    from napari.layers import Image

    import ldm_med

    path = samples / "ct_phantom.nii.gz"
    data, kwargs = _image(path)
    volume = ldm_med.load_volume(path)
    layer = Image(data, **kwargs)
    assert data.shape == volume.shape[::-1]
    np.testing.assert_allclose(layer.scale, volume.spacing[::-1])
    for ijk in ([0, 0, 0], [3, 5, 7], [127, 64, 47]):
        ras = volume.world(np.array(ijk))
        lps = ras * [-1, -1, 1]
        np.testing.assert_allclose(layer.data_to_world(ijk[::-1]), lps[::-1], atol=1e-9)
    assert kwargs["metadata"]["ldm_med"]["affine_ras"].tolist() == volume.affine.tolist()


def test_folder_with_several_series_opens_the_largest(samples, tmp_path, monkeypatch):
    import pydicom

    folder = tmp_path / "two_series"
    shutil.copytree(samples / "ct_gap_dicom", folder)
    small = sorted(folder.glob("*.dcm"))[:5]
    for path in small:  # a second, smaller series: same geometry, another SeriesInstanceUID
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = ds.SeriesInstanceUID + ".2"
        ds.SeriesNumber = 2
        ds.save_as(path)
    said = []
    monkeypatch.setattr("napari.utils.notifications.show_info", said.append)
    data, kwargs = _image(folder)
    md = kwargs["metadata"]
    assert data.shape[0] == 15 and md["missing"] == [3, 10, 11]  # slices 5-19 in 12 files
    assert md["n_series"] == 2 and len(md["ldm_med"]["other_series"]) == 1
    assert len(said) == 1 and "2 image series" in said[0] and "largest" in said[0]


@pytest.mark.parametrize("make", ["text file", "png", "empty folder", "folder of text", "missing",
                                  "mixed list"])
def test_refuses_what_it_does_not_read(tmp_path, make, samples):
    if make == "text file":
        path = tmp_path / "notes.txt"
        path.write_text("not a scan")
    elif make == "png":
        path = tmp_path / "image.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    elif make == "empty folder":
        path = tmp_path
    elif make == "folder of text":
        (tmp_path / "a.txt").write_text("x" * 300)
        path = tmp_path
    elif make == "missing":
        path = tmp_path / "nowhere" / "scan.nii.gz"
    else:
        path = [str(samples / "ct_phantom.nii.gz"), str(tmp_path)]
    assert get_reader(path if isinstance(path, list) else str(path)) is None


def test_probe_never_raises():
    for odd in (None, 3, "", "\0bad", ["\0"], [], object()):
        assert get_reader(odd) is None


@pytest.mark.viewer
@pytest.mark.parametrize("name", ["ct_gap_dicom", "mr_phantom.nii.gz"])
def test_viewer_open_picks_this_reader(make_napari_viewer, samples, name):
    """File > Open offers this reader for a folder and for a NIfTI file (napari's builtins claim
    every path too, so napari asks which to use, or takes ``plugin=``)."""
    from napari.plugins import _npe2

    viewer = make_napari_viewer()
    assert "ldm-med" in _npe2.get_readers(str(samples / name))
    (layer,) = viewer.open(str(samples / name), plugin="ldm-med")
    assert layer.metadata["ldm_med"]["source"].endswith(name)
    assert layer.data.ndim == 3 and layer.axis_labels == ("S", "P", "L")
