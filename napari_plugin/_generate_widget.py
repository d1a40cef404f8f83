"""The "Generate synthetic volumes" dock widget: a thin door onto ``ldm_med.generate``.

Pick a preset (CT, MR, molecular, astronomical), 2D or 3D, the number of samples, the guidance and,
optionally, the preset's attribute (within the range the model was trained on; otherwise each sample's
is drawn as the training data have it). Run starts the same thread worker as the reconstruction widget
(``_job.JobControls``): a progress bar over the sampler steps, Cancel at the next step, bad input as a
one-line notification. Each sample becomes a new image layer, ``synthetic <preset> seed <s>``, laid out
as the reader lays out a file (``layer_from_volume``: ``scale`` is the voxel size, CT in a soft-tissue
window) and carrying ``synthetic: True`` and the provenance (every setting, the seed, the attribute
drawn, the model, the measured attribute) in its metadata.

``widget.run(sync=True)`` runs the same job in the calling thread (tests, scripts).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from napari_plugin._job import Job, JobControls, device_choices, resolves_to_gpu
from napari_plugin._layers import layer_from_volume

if TYPE_CHECKING:
    import napari

BUNDLED, CHECKPOINT = "bundled default", "checkpoint file"


class GenerateWidget(JobControls, Container):
    """Generate synthetic images and volumes as new layers (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        import ldm_med
        from ldm_med.options import DEFAULT_GUIDANCE

        super().__init__(labels=True)
        self.viewer = viewer
        defaults = ldm_med.GenerateOptions(ldm_med.PRESET_NAMES[0])
        # {preset: {name, unit, low, high, description}}, the range the shipped model of these dims covers
        self.attributes = ldm_med.preset_attributes(defaults.dims)
        self.preset = ComboBox(label="preset", choices=list(ldm_med.PRESET_NAMES))
        self.dims = ComboBox(label="dimensions", choices=[("2D image", 2), ("3D volume", 3)],
                             value=defaults.dims)
        self.size = LineEdit(label="size", value="",
                             tooltip="H W (2D) or D H W (3D) voxels, or one number for all; empty: the "
                                     "model's training size (128 x 128, 64 x 64 x 64)")
        self.size.native.setPlaceholderText("model's size")
        self.n = SpinBox(label="samples", min=1, max=64, value=defaults.n,
                         tooltip="sample i uses seed + i; each becomes a layer")
        self.model_guidance = CheckBox(text="guidance: the model's setting", value=True,
                                       tooltip="the guidance the model records for the preset (measured; "
                                               "3D astronomical: 1, attribute 5), else 2")
        self.guidance = FloatSpinBox(label="guidance", min=0.0, max=20.0, step=0.5, enabled=False,
                                     value=DEFAULT_GUIDANCE,
                                     tooltip="classifier-free guidance: 0 unconditional, 1 conditional, "
                                             "> 1 stronger")
        self.condition = CheckBox(text="condition on", value=False)
        self.attr_value = FloatSpinBox(label="value", enabled=False)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=defaults.seed)
        self.show_advanced = CheckBox(text="advanced", value=False)
        self.sampler = ComboBox(label="sampler", choices=list(ldm_med.SAMPLER_NAMES), value=defaults.sampler)
        self.steps = SpinBox(label="steps", min=1, max=1000, value=defaults.steps)
        self.separate_attr = CheckBox(text="guide the attribute apart", value=False,
                                      tooltip="guide the attribute against the class-only model with its "
                                              "own scale (one more network pass per step)")
        self.attr_guidance = FloatSpinBox(label="attribute guidance", min=0.0, max=20.0, step=0.5, value=5.0,
                                          enabled=False)
        self.advanced = Container(widgets=[self.sampler, self.steps, self.separate_attr, self.attr_guidance],
                                  visible=False)
        self.device = ComboBox(label="device", choices=device_choices())
        self.model = ComboBox(label="model", choices=[BUNDLED, CHECKPOINT])
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.safetensors", visible=False)
        self.info = Label(label="")
        self.run_button = PushButton(text="Generate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="status")
        from qtpy.QtWidgets import QSizePolicy

        for label in (self.info, self.status):
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
            label.native.setWordWrap(True)
        self.extend([self.preset, self.dims, self.size, self.n, self.model_guidance, self.guidance,
                     self.condition, self.attr_value, self.seed, self.show_advanced, self.advanced,
                     self.device, self.model, self.checkpoint, self.info,
                     Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                               labels=False), self.status])
        self._connect()
        self._on_preset()

    # -- wiring -------------------------------------------------------------------------------
    def _connect(self) -> None:
        self.preset.changed.connect(self._on_preset)
        self.dims.changed.connect(self._on_dims)
        self.condition.changed.connect(lambda v: setattr(self.attr_value, "enabled", v))
        self.separate_attr.changed.connect(lambda v: setattr(self.attr_guidance, "enabled", v))
        self.model_guidance.changed.connect(lambda v: setattr(self.guidance, "enabled", not v))
        self.model.changed.connect(lambda v: setattr(self.checkpoint, "visible", v == CHECKPOINT))
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", v))
        for w in (self.dims, self.size, self.n, self.guidance, self.condition, self.attr_value, self.steps,
                  self.device, self.model, self.checkpoint):
            w.changed.connect(self._update_info)
        self.run_button.changed.connect(lambda: self.run())
        self.cancel_button.changed.connect(self.cancel)

    def _on_preset(self, _value: Any = None) -> None:
        """Point the attribute controls at the preset's attribute: its name, unit and trained range."""
        attr = self.attributes[self.preset.value]
        count = attr["unit"] == "count"
        lo, hi = inward(float(attr["low"]), float(attr["high"]), 0 if count else SPIN_DECIMALS)
        self.condition.text = f"condition on {attr['name']} ({attr['unit']})"
        self.condition.tooltip = (f"{attr['description']}; trained on {lo:g}-{hi:g} {attr['unit']}. "
                                  "Off: drawn per sample as the training data have it")
        with self.attr_value.changed.blocked():
            self.attr_value.range = (lo, hi)
            self.attr_value.step = 1.0 if count else 10.0 ** math.floor(math.log10((hi - lo) / 20.0))
            self.attr_value.value = round((lo + hi) / 2.0, 0 if count else 1)
        self.attr_value.tooltip = f"{attr['name']} in {attr['unit']}, {lo:g} to {hi:g}"
        self._update_info()

    def _on_dims(self, dims: int) -> None:
        """The 2D and 3D models were trained on different attribute ranges (3D sky cubes hold fewer
        sources): point the attribute controls at the chosen model's."""
        import ldm_med

        self.attributes = ldm_med.preset_attributes(dims)
        self._on_preset()

    def _update_info(self, _value: Any = None) -> None:
        try:
            self.options()
        except Exception as exc:  # InputError: a size of the wrong length, no checkpoint picked
            self._info(self.info, str(exc), warn=True)
            return
        if resolves_to_gpu(self.device.value):
            self._info(self.info, "GPU")
        else:
            self._info(self.info, "⚠ running on the CPU (no GPU in use): slower", warn=True)

    def options(self) -> Any:
        """``ldm_med.GenerateOptions`` from the widget (raises ``ldm_med.InputError``)."""
        import ldm_med

        checkpoint = None
        if self.model.value == CHECKPOINT:
            checkpoint = str(self.checkpoint.value or "")
            if not checkpoint or not Path(checkpoint).is_file():
                raise ldm_med.InputError("pick a generation model file (.safetensors) or the bundled model")
        attrs = ()
        if self.condition.value:
            attrs = ((self.attributes[self.preset.value]["name"], float(self.attr_value.value)),)
        return ldm_med.GenerateOptions(
            preset=self.preset.value, dims=self.dims.value, size=parse_size(self.size.value, self.dims.value),
            n=self.n.value, guidance=None if self.model_guidance.value else float(self.guidance.value),
            attrs=attrs, seed=self.seed.value,
            attr_guidance=float(self.attr_guidance.value) if self.separate_attr.value else None,
            sampler=self.sampler.value, steps=self.steps.value, device=self.device.value,
            checkpoint=checkpoint)

    # -- running ------------------------------------------------------------------------------
    def run(self, sync: bool = False) -> None:
        """Start generating in a thread worker (or, with ``sync``, in this thread)."""
        from napari.utils.notifications import show_error

        import ldm_med

        if self._job is not None:
            return
        try:
            options = self.options()
        except Exception as exc:
            show_error(f"ldm-med: {exc}")
            return
        self._start(Job(lambda progress: ldm_med.generate(options, progress=progress),
                        name="ldm-med generate"), sync)

    def _on_done(self, result: Any) -> None:
        if result is None:
            self.status.value = "cancelled"
            return
        add_generation_layers(self.viewer, result)
        units = {a["name"]: a["unit"] for a in self.attributes.values()}
        self._info(self.status, summary(result, units), warn=bool(result.notes))


def add_generation_layers(viewer: napari.viewer.Viewer, generation: Any) -> list:
    """Add each sample of an ``ldm_med.Generation`` as a new image layer; returns the layers."""
    layers = [viewer.add_image(data, **kwargs) for data, kwargs, _ in generation_layer_data(generation)]
    if layers:
        viewer.layers.selection.active = layers[0]
    return layers


def generation_layer_data(generation: Any) -> list[tuple]:
    """One image ``LayerDataTuple`` per sample, laid out as the reader lays out the saved file; a 2D
    sample (one slice) becomes a 2D layer."""
    opts = generation.options
    out = []
    for i, volume in enumerate(generation.volumes):
        data, kwargs, kind = layer_from_volume(volume, f"synthetic {opts.preset} seed {opts.seed + i}")
        if opts.dims == 2 and data.shape[0] == 1:
            data, kwargs = _drop_leading_axis(data, kwargs)
        out.append((data, kwargs, kind))
    return out


def _drop_leading_axis(data: np.ndarray, kwargs: dict) -> tuple[np.ndarray, dict]:
    """A one-slice layer as a 2D layer: its first axis (one voxel long) removed from the data and the
    transform; the slice bookkeeping of the metadata goes with it."""
    kwargs = dict(kwargs)
    for key in ("scale", "translate", "axis_labels"):
        kwargs[key] = tuple(kwargs[key])[1:]
    kwargs["affine"] = np.asarray(kwargs["affine"])[1:, 1:]
    kwargs["metadata"] = {k: v for k, v in kwargs["metadata"].items()
                          if k not in ("acquired", "missing", "slice_axis")}
    return data[0], kwargs


def summary(generation: Any, units: dict[str, str] | None = None) -> str:
    """The status line: how many samples, the time per sample, the attribute drawn for them and the
    attribute measured (in ``units[name]``), how many candidates each was chosen from, whether the
    sampler was steered toward the attribute, any notes."""
    n = len(generation.volumes)
    text = (f"{n} synthetic {generation.options.preset} sample{'s' if n > 1 else ''} in "
            f"{generation.seconds:.1f} s ({generation.seconds / max(n, 1):.2f} s each)")
    for key, verb, fmt in (("attrs_drawn", "drawn", ".4g"), ("measured", "measured", "g")):
        values: dict[str, list[float]] = {}
        for volume in generation.volumes:
            for name, value in volume.metadata.get("provenance", {}).get(key, {}).items():
                values.setdefault(name, []).append(value)
        for name, vals in values.items():
            unit = (units or {}).get(name, "")
            text += f"; {verb} {name}: {', '.join(f'{v:{fmt}}' for v in vals)}" + (f" {unit}" if unit else "")
    reranked = [r for v in generation.volumes if (r := v.metadata.get("provenance", {}).get("reranking"))]
    if reranked:
        drawn = sorted({len(r["seeds"]) for r in reranked})
        k = str(drawn[0]) if len(drawn) == 1 else f"{drawn[0]}-{drawn[-1]}"
        text += f"; each the closest of {k} candidates to the requested {reranked[0]['attribute']}"
    steered = [r for v in generation.volumes if (r := v.metadata.get("provenance", {}).get("steering"))]
    if steered:
        text += f"; steered toward the {steered[0]['attribute']} asked for or drawn"
    return text + "".join(f"; {note}" for note in generation.notes)


SPIN_DECIMALS = 2  # what magicgui's FloatSpinBox shows and keeps


def inward(low: float, high: float, decimals: int) -> tuple[float, float]:
    """``[low, high]`` rounded inwards to ``decimals``: a spin box rounds its range to its decimals, and
    rounded outwards it would offer values beyond the trained range (clamped, with a warning)."""
    q = 10.0 ** decimals
    return math.ceil(low * q - 1e-9) / q, math.floor(high * q + 1e-9) / q


def parse_size(text: str, dims: int) -> tuple[int, ...] | None:
    """``""`` -> ``None`` (the model's size); ``"64"`` -> ``(64,) * dims``; ``"96 128"`` -> ``(96, 128)``."""
    import ldm_med

    parts = text.replace(",", " ").replace("x", " ").split()
    if not parts:
        return None
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ldm_med.InputError(f"size {text!r}: expected whole numbers, e.g. 128 or 128 128") from None
    return sizes * dims if len(sizes) == 1 else sizes
