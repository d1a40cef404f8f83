"""The "Generate synthetic volumes" widget in a real viewer, on the tiny generation model: the controls
(the attribute follows the preset), a run's layers (names, physical scale, CT window, provenance),
Cancel, and errors as notifications."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.viewer
RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def gen_widget(viewer, tiny_generator):
    """The widget docked in the viewer, set to the tiny model on the CPU with 2 sampler steps."""
    from napari_plugin._generate_widget import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = "checkpoint file"
    widget.checkpoint.value = tiny_generator
    widget.device.value = "cpu"
    widget.steps.value = 2
    return widget


def _run(qtbot, widget):
    widget.run_button.native.click()
    assert not widget.run_button.enabled and widget.cancel_button.enabled  # while it runs
    qtbot.waitUntil(lambda: widget._job is None, timeout=RUN_TIMEOUT_MS)
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def _synthetic(viewer):
    return {layer.name: layer for layer in viewer.layers if layer.name.startswith("synthetic ")}


def _notifications():
    """Collect napari's notifications while the block runs: ``with _notifications() as seen:``."""
    import contextlib

    from napari.utils.notifications import notification_manager

    @contextlib.contextmanager
    def collect():
        seen: list = []
        notification_manager.notification_ready.connect(seen.append)
        try:
            yield seen
        finally:
            notification_manager.notification_ready.disconnect(seen.append)

    return collect()


def test_widget_in_file_new_layer_menu(viewer):
    from napari._app_model import get_app_model

    app = get_app_model()
    items = app.menus.get_menu("napari/file/new_layer")
    assert "ldm-med.generate_widget" in [item.command.id for item in items
                                         if getattr(item, "command", None) is not None]
    app.commands.execute_command("ldm-med.generate_widget").result()  # what the menu item does
    assert "Generate synthetic volumes" in "".join(viewer.window.dock_widgets)


def test_the_attribute_control_follows_the_preset(viewer):
    import ldm_med
    from napari_plugin._generate_widget import GenerateWidget, inward

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.preset.value == "medical-ct"
    assert widget.condition.text == "condition on body_diameter (mm)"
    assert widget.attr_value.range == (150.0, 290.0) and widget.attr_value.value == 220.0
    assert not widget.condition.value and not widget.attr_value.enabled
    trained = {dims: ldm_med.preset_attributes(dims) for dims in (2, 3)}  # the shipped models' ranges
    widget.preset.value = "astronomical"
    assert widget.condition.text == "condition on n_sources (count)"
    sky = trained[2]["astronomical"]
    assert widget.attr_value.range == (sky["low"], sky["high"]) and widget.attr_value.step == 1.0
    assert widget.attr_value.value == round((sky["low"] + sky["high"]) / 2)  # a whole count
    widget.preset.value = "molecular"
    assert widget.condition.text == "condition on radius_of_gyration (angstrom)"
    mol = trained[2]["molecular"]
    assert widget.attr_value.range == inward(mol["low"], mol["high"], 2)  # never beyond the trained range
    assert mol["low"] <= widget.attr_value.range[0] < widget.attr_value.range[1] <= mol["high"] <= 17.0
    with pytest.raises(ValueError, match="outside of the allowed range"):  # kept to the trained range
        widget.attr_value.value = 99.0
    assert widget.options().attrs == ()
    widget.condition.value = True
    assert widget.attr_value.enabled
    widget.attr_value.value = 12.5
    assert widget.options().attrs == (("radius_of_gyration", 12.5),)
    assert widget.options().attr_guidance is None and not widget.attr_guidance.enabled
    assert widget.options().guidance is None and not widget.guidance.enabled  # the model's setting
    widget.model_guidance.value = False
    assert widget.guidance.enabled and widget.options().guidance == 2.0
    widget.separate_attr.value = True  # advanced: the attribute's own guidance scale
    assert widget.attr_guidance.enabled and widget.options().attr_guidance == 5.0
    # size: one number for every axis, or one per axis; the wrong count is shown before any run
    widget.dims.value = 3
    mol3 = trained[3]["molecular"]
    assert widget.attr_value.range == inward(mol3["low"], mol3["high"], 2)
    widget.preset.value = "astronomical"  # the 3D cubes hold fewer sources than the 2D sky images
    assert widget.attr_value.range == (trained[3]["astronomical"]["low"], trained[3]["astronomical"]["high"])
    assert trained[3]["astronomical"]["high"] < sky["high"]
    widget.size.value = "32"
    assert widget.options().size == (32, 32, 32) and widget.options().dims == 3
    widget.size.value = "32 32"
    assert "3 positive sizes" in widget.info.value
    widget.size.value = ""
    assert widget.options().size is None
    assert {"auto", "cpu"} <= set(widget.device.choices)


def test_run_adds_synthetic_layers_with_the_physical_scale(qtbot, gen_widget):
    viewer = gen_widget.viewer
    gen_widget.n.value, gen_widget.seed.value = 2, 3
    gen_widget.condition.value, gen_widget.attr_value.value = True, 200.0
    bars, on_progress = [], gen_widget._on_progress

    def spy(event):  # what napari's activity panel shows at each step
        on_progress(event)
        if gen_widget._pbar is not None:  # an event arriving after the run ended is dropped
            bars.append((gen_widget._pbar.desc.rstrip(": "), gen_widget._pbar.n, gen_widget._pbar.total))

    gen_widget._on_progress = spy
    _run(qtbot, gen_widget)
    # 2 samples x 2 steps; on a loaded machine the last event can arrive after the run ended
    assert bars[-1][0] == "ldm-med: generate" and bars[-1][2] == 4 and bars[-1][1] >= 3, bars
    assert [n for _, n, _ in bars] == sorted(n for _, n, _ in bars)
    assert gen_widget._pbar is None
    layers = _synthetic(viewer)
    assert set(layers) == {"synthetic medical-ct seed 3", "synthetic medical-ct seed 4"}
    for seed, layer in zip((3, 4), layers.values()):
        assert layer.data.shape == (32, 32) and layer.ndim == 2  # a 2D sample is a 2D layer
        np.testing.assert_array_equal(layer.scale, [3.0, 3.0])  # the preset's 2D voxel size, mm
        assert tuple(layer.contrast_limits) == (-160.0, 240.0)  # CT: the soft-tissue window
        md = layer.metadata
        assert md["synthetic"] is True and md["modality"] == "CT"
        prov = md["provenance"]
        assert prov["sample_seed"] == seed and prov["preset"] == "medical-ct" and prov["steps"] == 2
        assert prov["attrs"] == {"body_diameter": 200.0} and "body_diameter" in prov["measured"]
    assert not np.array_equal(*(layer.data for layer in layers.values()))  # one seed each
    status = gen_widget.status.value
    assert status.startswith("2 synthetic medical-ct samples in") and "s each" in status, status
    assert "measured body_diameter" in status and status.endswith(" mm"), status


def test_3d_samples_are_laid_out_as_the_reader_lays_out_files():
    import ldm_med
    from napari_plugin._generate_widget import generation_layer_data
    from napari_plugin._layers import layer_from_volume

    volume = ldm_med.Volume(np.random.default_rng(0).normal(size=(8, 6, 4)).astype(np.float32),
                            np.diag([6.0, 6.0, 5.0, 1.0]), slice_axis=2,
                            metadata={"modality": "CT", "synthetic": True, "provenance": {"seed": 7}})
    options = SimpleNamespace(preset="medical-ct", seed=7, dims=3)
    generation = SimpleNamespace(volumes=[volume], options=options)
    ((data, kwargs, kind),) = generation_layer_data(generation)
    assert kind == "image" and kwargs["name"] == "synthetic medical-ct seed 7"
    assert data.shape == (4, 6, 8)  # slices first: the slider runs over z
    np.testing.assert_array_equal(kwargs["scale"], [5.0, 6.0, 6.0])
    reader = layer_from_volume(volume, "x")[1]
    np.testing.assert_array_equal(kwargs["affine"], reader["affine"])
    assert kwargs["metadata"]["synthetic"] is True and kwargs["metadata"]["slice_axis"] == 0


def test_cancel_stops_the_run(qtbot, gen_widget):
    viewer = gen_widget.viewer
    gen_widget.n.value, gen_widget.steps.value = 64, 1000  # minutes if not cancelled
    gen_widget.run_button.native.click()
    qtbot.waitUntil(lambda: gen_widget._job is not None and gen_widget._job.last is not None
                    and gen_widget._job.last[1] > 0, timeout=RUN_TIMEOUT_MS)
    clicked = time.perf_counter()
    gen_widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: gen_widget._job is None, timeout=10_000)
    assert time.perf_counter() - clicked < 5.0  # a sampler step of the tiny model takes milliseconds
    assert gen_widget.status.value == "cancelled"
    assert not _synthetic(viewer)
    gen_widget.n.value, gen_widget.steps.value = 1, 1  # and the widget still works
    _run(qtbot, gen_widget)
    assert set(_synthetic(viewer)) == {"synthetic medical-ct seed 0"}


def test_bad_input_becomes_a_notification(qtbot, gen_widget, tmp_path):
    viewer = gen_widget.viewer
    bad = tmp_path / "not_a_model.safetensors"
    bad.write_bytes(b"garbage")
    good = gen_widget.checkpoint.value
    with _notifications() as seen:
        gen_widget.checkpoint.value = ""  # no file picked: refused before starting
        gen_widget.run_button.native.click()
        assert gen_widget._job is None and "pick a generation model" in str(seen[-1].message)
        gen_widget.checkpoint.value = bad  # a file that is no model: fails in the worker
        _run(qtbot, gen_widget)
        assert gen_widget.status.value.startswith("failed"), gen_widget.status.value
        assert any("not_a_model" in str(n.message) for n in seen), [str(n.message) for n in seen]
        gen_widget.checkpoint.value, gen_widget.dims.value = good, 3  # a 2D model asked for 3D
        _run(qtbot, gen_widget)
        assert "a 2D model" in str(seen[-1].message), str(seen[-1].message)
    assert all(n.message.startswith("ldm-med: ") for n in seen)  # one line each, no traceback
    assert not _synthetic(viewer)


def test_status_line_says_what_was_drawn_and_what_was_measured():
    from types import SimpleNamespace

    from napari_plugin._generate_widget import summary

    vols = [SimpleNamespace(metadata={"provenance": {"attrs_drawn": {"n_sources": d},
                                                     "measured": {"n_sources": m}}})
            for d, m in ((12.25, 11.0), (30.5, 27.0))]
    gen = SimpleNamespace(volumes=vols, options=SimpleNamespace(preset="astronomical"), seconds=2.0, notes=[])
    text = summary(gen, {"n_sources": "count"})
    assert "drawn n_sources: 12.25, 30.5 count; measured n_sources: 11, 27 count" in text, text


def test_status_line_says_how_many_candidates_each_sample_was_chosen_from():
    from types import SimpleNamespace

    from napari_plugin._generate_widget import summary

    prov = {"measured": {"radius_of_gyration": 8.2},
            "reranking": {"attribute": "radius_of_gyration", "kept": 1, "seeds": [0, 5, 9],
                          "miss": [0.3, 0.1, 0.4]}}
    gen = SimpleNamespace(volumes=[SimpleNamespace(metadata={"provenance": prov})],
                          options=SimpleNamespace(preset="molecular"), seconds=21.0, notes=[])
    assert "each the closest of 3 candidates to the requested radius_of_gyration" in summary(gen)


def test_status_line_says_when_candidates_stopped_early_and_the_sampler_was_steered():
    from types import SimpleNamespace

    from napari_plugin._generate_widget import summary

    def volume(seeds):
        return SimpleNamespace(metadata={"provenance": {
            "reranking": {"attribute": "radius_of_gyration", "kept": 0, "seeds": seeds,
                          "miss": [0.1] * len(seeds)},
            "steering": {"attribute": "radius_of_gyration", "strength": 1.0}}})

    gen = SimpleNamespace(volumes=[volume([0]), volume([1, 7])], options=SimpleNamespace(preset="molecular"),
                          seconds=30.0, notes=[])
    text = summary(gen)
    assert "each the closest of 1-2 candidates" in text
    assert "steered toward the radius_of_gyration asked for or drawn" in text
