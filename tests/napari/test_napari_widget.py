"""The "Reconstruct missing slices" widget end to end, in napari's thread worker: result layers with
the source's geometry, the missing-slice preview, Cancel, errors, and an untouched input layer."""
from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pytest

pytestmark = pytest.mark.viewer
RUN_TIMEOUT_MS = 60_000


def _checksum(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _run(qtbot, widget):
    widget.run_button.native.click()
    assert not widget.run_button.enabled and widget.cancel_button.enabled  # while it runs
    qtbot.waitUntil(lambda: widget._job is None, timeout=RUN_TIMEOUT_MS)
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def _new_layers(viewer, source):
    return {layer.name[len(source.name) + 1:]: layer for layer in viewer.layers
            if layer is not source and layer.name.startswith(source.name + " ")}


def test_missing_slices_shown_before_running(ct_widget):
    viewer, source = ct_widget.viewer, ct_widget.image.value
    preview = viewer.layers[f"{source.name} missing"]
    assert np.flatnonzero(preview.data.any(axis=(1, 2))).tolist() == [8, 15, 16]
    np.testing.assert_array_equal(preview.scale, source.scale)
    ct_widget.missing_mode.value = "spec"
    ct_widget.spec.value = "keep-every:4"
    assert preview.data.any(axis=(1, 2)).sum() == 15
    ct_widget.spec.value = "3,99"
    assert "99" in ct_widget.missing_info.value and ct_widget._mask is None
    painted = viewer.add_labels(np.zeros(source.data.shape, np.uint8), name="paint")
    painted.data[[2, 5], 10:20, 10:20] = 1
    ct_widget.missing_mode.value = "from a Labels layer"
    ct_widget.labels_layer.value = painted
    assert np.flatnonzero(ct_widget._mask).tolist() == [2, 5]
    assert len([layer for layer in viewer.layers if layer.name.endswith(" missing")]) == 1
    assert ct_widget.device_info.value.startswith("⚠ running on the CPU")
    # another image: the preview follows it, in its geometry
    from napari_plugin._sample_data import mr_phantom

    data, kwargs, _ = mr_phantom()[0]
    mr = viewer.add_image(data, **kwargs)
    ct_widget.missing_mode.value = "auto-detect"
    ct_widget.image.value = mr
    (preview,) = [layer for layer in viewer.layers if layer.name.endswith(" missing")]
    assert preview.name == "MR phantom missing" and preview.data.shape == mr.data.shape
    np.testing.assert_array_equal(preview.scale, mr.scale)
    assert np.flatnonzero(preview.data.any(axis=(1, 2))).tolist() == [9, 18, 19, 29]


def test_run_adds_layers_with_the_source_geometry(qtbot, ct_widget):
    viewer, source = ct_widget.viewer, ct_widget.image.value
    before = _checksum(source.data)
    bars, on_progress = [], ct_widget._on_progress

    def spy(event):  # what napari's activity panel shows at each step
        on_progress(event)
        bars.append(ct_widget._pbar.desc.rstrip(": "))

    ct_widget._on_progress = spy
    _run(qtbot, ct_widget)
    assert ct_widget.status.value.startswith("done"), ct_widget.status.value
    assert {"ldm-med: refine", "ldm-med: sample", "ldm-med: decode"} <= set(bars), set(bars)
    assert ct_widget._pbar is None  # closed at the end
    layers = _new_layers(viewer, source)
    assert set(layers) == {"missing", "reconstructed", "uncertainty", "synthesised", "samples"}
    for name in ("reconstructed", "uncertainty", "synthesised", "missing"):
        layer = layers[name]
        assert layer.data.shape == source.data.shape
        np.testing.assert_array_equal(layer.scale, source.scale)
        np.testing.assert_array_equal(layer.translate, source.translate)
        np.testing.assert_array_equal(layer.affine.affine_matrix, source.affine.affine_matrix)
    for key in source.metadata:
        assert key in layers["reconstructed"].metadata
    assert layers["reconstructed"].metadata["synthesised_slices"] == [8, 15, 16]
    recon = np.asarray(layers["reconstructed"].data)
    acquired = source.metadata["acquired"]
    np.testing.assert_array_equal(recon[acquired], np.asarray(source.data)[acquired])  # bit-exact
    assert recon[[8, 15, 16]].std() > 0
    unc = layers["uncertainty"]
    assert not unc.visible and unc.blending == "additive" and unc.colormap.name == "inferno"
    assert unc.data[[8, 15, 16]].max() > 0 and unc.data[acquired].max() == 0
    assert np.flatnonzero(layers["synthesised"].data.any(axis=(1, 2))).tolist() == [8, 15, 16]
    samples = layers["samples"]
    assert samples.data.shape == (2, *source.data.shape)  # samples first: a slider over samples
    np.testing.assert_array_equal(samples.scale, [1.0, *source.scale])
    np.testing.assert_array_equal(samples.translate, [0.0, *source.translate])
    assert _checksum(source.data) == before  # the input layer is never written to
    assert not layers["missing"].visible


def test_cancel_stops_the_run(qtbot, ct_widget):
    viewer, source = ct_widget.viewer, ct_widget.image.value
    ct_widget.refine.value = "adapt"
    ct_widget.always_adapt.value = True  # a CT phantom is otherwise not fine-tuned at all
    assert ct_widget.options().skip_margin == math.inf
    ct_widget.adapt_steps.value = 5000  # minutes if not cancelled
    ct_widget.run_button.native.click()
    qtbot.waitUntil(lambda: ct_widget._job is not None and ct_widget._job.last is not None
                    and ct_widget._job.last[0] == "adapt", timeout=RUN_TIMEOUT_MS)
    clicked = time.perf_counter()
    ct_widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: ct_widget._job is None, timeout=10_000)
    assert time.perf_counter() - clicked < 5.0  # a step of fine-tuning takes well under a second
    assert ct_widget.status.value == "cancelled"
    assert ct_widget.run_button.enabled and not ct_widget.cancel_button.enabled
    assert set(_new_layers(viewer, source)) == {"missing"}
    # quitting the worker (napari's task status does) stops the computation as well
    ct_widget.run_button.native.click()
    qtbot.waitUntil(lambda: ct_widget._job.last is not None, timeout=RUN_TIMEOUT_MS)
    job = ct_widget._job
    ct_widget._worker.quit()
    qtbot.waitUntil(lambda: ct_widget._job is None, timeout=10_000)
    assert job.cancel.is_set() and ct_widget.status.value == "cancelled"
    # the viewer and the widget still work: a quick run goes through
    ct_widget.refine.value, ct_widget.samples.value = "pretrained", 1
    _run(qtbot, ct_widget)
    assert "reconstructed" in _new_layers(viewer, source)


def test_error_in_the_worker_becomes_a_notification(qtbot, ct_widget, tmp_path):
    from napari.utils.notifications import notification_manager

    bad = tmp_path / "not_a_model.safetensors"
    bad.write_bytes(b"garbage")
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        ct_widget.model.value = "checkpoint file"  # and no file picked: refused before starting
        ct_widget.run_button.native.click()
        assert ct_widget._job is None and "pick a checkpoint" in str(seen[-1].message)
        ct_widget.checkpoint.value = bad  # a file that is no checkpoint: fails in the worker
        _run(qtbot, ct_widget)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert ct_widget.status.value.startswith("failed"), ct_widget.status.value
    assert any("not_a_model" in str(n.message) for n in seen), [str(n.message) for n in seen]
    assert "reconstructed" not in _new_layers(ct_widget.viewer, ct_widget.image.value)
    ct_widget.model.value = "bundled default"  # and it recovers
    _run(qtbot, ct_widget)
    assert ct_widget.status.value.startswith("done")


def test_screenshot_of_the_result_is_not_blank(make_napari_viewer):
    from napari_plugin._screenshot import reconstruct_ct_sample

    viewer = make_napari_viewer(show=True)  # a hidden canvas renders black
    widget = reconstruct_ct_sample(viewer)
    assert widget.status.value.startswith("done")
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    assert canvas.std() > 10  # an image, not a flat colour
    assert (canvas.max(axis=-1) > 40).mean() > 0.05  # a good part of the canvas shows the volume
    window = viewer.screenshot(canvas_only=False, flash=False)
    assert window.shape[0] > canvas.shape[0] and window.shape[1] > canvas.shape[1]


def test_modality_choice_says_what_a_layer_holds(qtbot, viewer):
    """A cube loaded from a NIfTI that does not say what it holds: the advanced "modality" choice makes
    it a spectral cube, and the check then scores the blend on in-plane rows too."""
    from ldm_med.data import astro_field
    from napari_plugin._widget import ReconstructWidget

    source = viewer.add_image(np.moveaxis(astro_field((24, 24, 12), seed=3).data, 2, 0), name="cube")
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = source
    widget.missing_mode.value = "spec"
    widget.spec.value = "keep-every:2"
    widget.refine.value, widget.device.value = "pretrained", "cpu"
    runs = {}
    for choice in ("from the layer", "ASTRO"):
        widget.modality.value = choice
        _run(qtbot, widget)
        runs[choice] = viewer.layers.selection.active.metadata  # the reconstructed layer
    assert "check_score" not in runs["from the layer"]["reconstruction"]
    assert "check_score" in runs["ASTRO"]["reconstruction"]
    assert "modality" not in source.metadata  # the layer itself is left as it was
