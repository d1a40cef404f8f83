"""Fixtures for the napari plugin tests (pytest-qt; the viewer tests need ``xvfb-run``)."""
from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def ct_widget(viewer):
    """The viewer with the CT sample (DICOM, slices 8, 15, 16 missing) and the widget docked,
    set for a fast run: pretrained refiner, 2 samples of 1 step, CPU."""
    from napari_plugin._sample_data import ct_phantom
    from napari_plugin._widget import ReconstructWidget

    data, kwargs, _ = ct_phantom()[0]
    viewer.add_image(data, **kwargs)
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.refine.value = "pretrained"
    widget.samples.value = 2
    widget.steps.value = 1
    widget.device.value = "cpu"
    return widget
