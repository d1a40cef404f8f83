"""The "Reconstruct missing slices" dock widget: a thin door onto ``ldm_med.reconstruct``.

The missing slices (detected, painted in a Labels layer, or typed as a spec) are shown as a Labels
layer as soon as they are known. Run starts a napari thread worker over ``_job.Job.events``: the
activity dock shows the stage and step, Cancel stops at the next step, errors become napari
notifications (the worker relays them) and the widget is ready again. Results are new layers with
the source layer's transform and metadata; the source layer is never written to.

``widget.run(sync=True)`` runs the same job in the calling thread (tests, scripts).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox

from napari_plugin._job import (
    Job,
    JobControls,
    device_choices,
    estimate_seconds,
    format_seconds,
    resolves_to_gpu,
)
from napari_plugin._layers import (
    format_slices,
    shear_matrix,
    slice_mask_labels,
    slices_in_labels,
    transform_kwargs,
)

if TYPE_CHECKING:
    import napari

AUTO, FROM_LABELS, SPEC = "auto-detect", "from a Labels layer", "spec"
BUNDLED, CHECKPOINT = "bundled default", "checkpoint file"
FROM_LAYER = "from the layer"


class ReconstructWidget(JobControls, Container):
    """Reconstruct the missing slices of an image layer (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        import ldm_med
        from ldm_med.options import MODALITIES

        super().__init__(labels=True)
        self.viewer = viewer
        defaults = ldm_med.ReconstructOptions()
        self.image = ComboBox(label="image", choices=self._images)
        self.missing_mode = ComboBox(label="missing slices", choices=[AUTO, FROM_LABELS, SPEC])
        self.labels_layer = ComboBox(label="labels layer", choices=self._labels_layers,
                               visible=False)
        self.spec = LineEdit(label="spec", value="keep-every:2", visible=False,
                             tooltip="'3,7,10-14', 'keep-every:4' or 'auto' (0-based, along the axis)")
        self.axis = SpinBox(label="slice axis", min=0, max=2, value=0)
        self.missing_info = Label(label="")
        self.model = ComboBox(label="model", choices=[BUNDLED, CHECKPOINT])
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.safetensors", visible=False)
        self.refine = ComboBox(label="refine", choices=list(ldm_med.REFINE_MODES), value=defaults.refine)
        self.samples = SpinBox(label="samples", min=1, max=64, value=defaults.samples,
                               tooltip="latent-diffusion samples; 2 or more give uncertainty")
        self.show_advanced = CheckBox(text="advanced", value=False)
        self.sampler = ComboBox(label="sampler", choices=list(ldm_med.SAMPLER_NAMES),
                                value=defaults.sampler)
        self.steps = SpinBox(label="steps", min=1, max=1000, value=defaults.steps)
        self.adapt_steps = SpinBox(label="adapt steps", min=0, max=100000, value=defaults.adapt_steps)
        self.modality = ComboBox(label="modality", choices=[FROM_LAYER, *MODALITIES],
                                 tooltip="what the image holds where its file does not say (a NIfTI from "
                                         "another tool): it picks the shipped refiner; ASTRO (a spectral "
                                         "cube) also checks the blend on in-plane rows at the real gaps")
        self.always_adapt = CheckBox(text="always fine-tune", value=False,
                                     tooltip="by default a CT scan is not fine-tuned where the shipped CT "
                                             "refiner already beats every interpolation on the check "
                                             "(on the benchmark it never gained there)")
        self.advanced = Container(widgets=[self.sampler, self.steps, self.adapt_steps, self.always_adapt,
                                           self.modality], visible=False)
        self.device = ComboBox(label="device", choices=device_choices())
        self.device_info = Label(label="")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=defaults.seed)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="status")
        from qtpy.QtWidgets import QSizePolicy

        for label in (self.missing_info, self.device_info, self.status):
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            label.native.setWordWrap(label is not self.status)
        self.extend([self.image, self.missing_mode, self.labels_layer, self.spec, self.axis,
                     self.missing_info, self.model, self.checkpoint, self.refine, self.samples,
                     self.show_advanced, self.advanced, self.device, self.device_info, self.seed,
                     Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                               labels=False), self.status])
        self._mask: np.ndarray | None = None
        self._preview = None  # the Labels layer showing the missing slices
        self._preview_source = None  # the image layer it shows them for
        self._connect()
        self._on_image()

    # -- wiring -------------------------------------------------------------------------------
    def _connect(self) -> None:
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._on_layers)
        self.image.changed.connect(self._on_image)
        for w in (self.missing_mode, self.labels_layer, self.spec, self.axis):
            w.changed.connect(self.update_missing)
        for w in (self.refine, self.samples, self.steps, self.adapt_steps, self.device, self.model,
                  self.checkpoint):
            w.changed.connect(self._update_device_info)
        self.model.changed.connect(lambda v: setattr(self.checkpoint, "visible", v == CHECKPOINT))
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", v))
        self.run_button.changed.connect(lambda: self.run())
        self.cancel_button.changed.connect(self.cancel)

    def _images(self, _widget: Any = None) -> list:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb]

    def _labels_layers(self, _widget: Any = None) -> list:
        from napari.layers import Labels

        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Labels) and layer.ndim == 3]

    def _on_layers(self, event: Any = None) -> None:
        if event is not None and event.type == "removed" and event.value is self._preview:
            self._preview = None
        self.image.reset_choices()
        self.labels_layer.reset_choices()

    def _on_image(self, _value: Any = None) -> None:
        layer = self.image.value
        if layer is not None:
            with self.axis.changed.blocked():
                self.axis.value = int(layer.metadata.get("slice_axis", 0))
        self.update_missing()

    # -- missing slices -----------------------------------------------------------------------
    def update_missing(self, _value: Any = None) -> None:
        """Work out the slices to fill and show them as a Labels layer (before any run)."""
        mode = self.missing_mode.value
        self.labels_layer.visible, self.spec.visible = mode == FROM_LABELS, mode == SPEC
        layer = self.image.value
        self._mask = None
        if layer is None:
            self._info(self.missing_info, "open or pick a 3D image layer", warn=True)
            self._update_device_info()
            return
        try:
            self._mask = self._missing_mask(layer)
        except Exception as exc:  # InputError from the spec parser, a labels layer of another shape
            self._info(self.missing_info, str(exc), warn=True)
            self._update_device_info()
            return
        n = int(self._mask.sum())
        self._info(self.missing_info, f"{n} slice{'s' if n > 1 else ''} to fill: "
                   f"{format_slices(np.flatnonzero(self._mask))}" if n else "no missing slices",
                   warn=n == 0)
        if mode != FROM_LABELS:
            self._show_preview(layer)
        self._update_device_info()

    def _missing_mask(self, layer: Any) -> np.ndarray:
        import ldm_med

        axis = self.axis.value
        if self.missing_mode.value == FROM_LABELS:
            labels = self.labels_layer.value
            if labels is None:
                raise ValueError("pick a Labels layer: painted slices are filled")
            if labels.data.shape != layer.data.shape:
                raise ValueError(f"labels layer {labels.name!r} has shape {labels.data.shape}, "
                                 f"the image {layer.data.shape}")
            return slices_in_labels(labels.data, axis)
        spec = "auto" if self.missing_mode.value == AUTO else self.spec.value
        return ldm_med.parse_missing(spec, volume_from_layer(layer, axis, copy=False))

    def _show_preview(self, layer: Any) -> None:
        data = slice_mask_labels(layer.data.shape, self.axis.value, self._mask)
        preview = self._preview
        if preview is not None and preview in self.viewer.layers:
            if self._preview_source is layer:
                preview.data, preview.visible = data, True
                return
            self.viewer.layers.remove(preview)  # another image: its own geometry
        from napari.layers import Labels

        # kept before it is added: adding it re-enters here through the layer-list events
        self._preview = Labels(data, name=f"{layer.name} missing", opacity=0.4,
                               metadata={"source_layer": layer.name}, **transform_kwargs(layer))
        self._preview_source = layer
        self.viewer.add_layer(self._preview)
        self.viewer.layers.selection.active = layer

    # -- device and time ----------------------------------------------------------------------
    def _update_device_info(self, _value: Any = None) -> None:
        layer = self.image.value
        try:
            options = self.options()
        except Exception as exc:
            self._info(self.device_info, str(exc), warn=True)
            return
        on_gpu = resolves_to_gpu(self.device.value)
        eta = ""
        if layer is not None:
            eta = f"about {format_seconds(estimate_seconds(layer.data.shape, options, on_gpu))}"
        if on_gpu:
            self._info(self.device_info, f"GPU; {eta}" if eta else "GPU")
        else:
            self._info(self.device_info, "⚠ running on the CPU (no GPU in use): slower"
                       + (f"; {eta} on 2 cores" if eta else ""), warn=True)

    def options(self) -> Any:
        """``ldm_med.ReconstructOptions`` from the widget (raises ``ldm_med.InputError``)."""
        import ldm_med

        checkpoint = None
        if self.model.value == CHECKPOINT:
            checkpoint = str(self.checkpoint.value or "")
            if not checkpoint or not Path(checkpoint).is_file():
                raise ldm_med.InputError("pick a checkpoint file (.safetensors) or the bundled model")
        return ldm_med.ReconstructOptions(
            refine=self.refine.value, adapt_steps=self.adapt_steps.value, sampler=self.sampler.value,
            skip_margin=math.inf if self.always_adapt.value else None,
            steps=self.steps.value, samples=self.samples.value, seed=self.seed.value,
            device=self.device.value, checkpoint=checkpoint)

    # -- running ------------------------------------------------------------------------------
    def run(self, sync: bool = False) -> None:
        """Start a reconstruction in a thread worker (or, with ``sync``, in this thread)."""
        from napari.utils.notifications import show_error

        import ldm_med

        if self._job is not None:
            return
        self.update_missing()  # a Labels layer may have been painted since
        layer = self.image.value
        try:
            if layer is None:
                raise ValueError("no image layer to reconstruct")
            if self._mask is None:
                raise ValueError(self.missing_info.value or "no missing slices")
            if not self._mask.any():
                raise ValueError(f"{layer.name}: no missing slices to fill")
            options = self.options()
            volume = volume_from_layer(layer, self.axis.value, copy=True)
            if self.modality.value != FROM_LAYER:
                volume.metadata["modality"] = self.modality.value
        except Exception as exc:
            show_error(f"ldm-med: {exc}")
            return
        mask = self._mask.copy()
        self._source = layer
        self._start(Job(lambda progress: ldm_med.reconstruct(volume, mask, options, progress=progress),
                        name="ldm-med reconstruct"), sync)

    def _on_done(self, result: Any) -> None:
        if result is None:
            self.status.value = "cancelled"
            return
        add_result_layers(self.viewer, self._source, result)
        if self._preview is not None:  # the synthesised-slices layer shows the same slices now
            self._preview.visible = False
        self._info(self.status, f"done in {result.seconds:.1f} s")


def add_result_layers(viewer: napari.viewer.Viewer, source: Any, result: Any) -> list:
    """Add the reconstruction, its uncertainty, the synthesised slices and the posterior samples as
    new layers with the source layer's transform and metadata. Returns the new layers."""
    info = {"synthesised_slices": np.flatnonzero(result.missing).tolist(),
            "reconstruction": result.volume.metadata.get("reconstruction", {}),
            "source_layer": source.name}
    metadata = {**source.metadata, **info}
    geometry = transform_kwargs(source)
    axis = result.volume.slice_axis
    layers = [viewer.add_image(result.volume.data, name=f"{source.name} reconstructed",
                               colormap=source.colormap.name, contrast_limits=source.contrast_limits,
                               metadata=dict(metadata), **geometry)]
    if result.uncertainty is not None:
        hi = float(np.percentile(result.uncertainty[result.uncertainty > 0], 99)) \
            if (result.uncertainty > 0).any() else 1.0
        layers.append(viewer.add_image(result.uncertainty, name=f"{source.name} uncertainty",
                                       colormap="inferno", blending="additive", visible=False,
                                       contrast_limits=(0.0, hi), metadata=dict(metadata), **geometry))
    layers.append(viewer.add_labels(slice_mask_labels(result.volume.shape, axis, result.missing),
                                    name=f"{source.name} synthesised", opacity=0.3,
                                    metadata=dict(metadata), **geometry))
    if result.samples is not None:
        layers.append(viewer.add_image(result.samples, name=f"{source.name} samples",
                                       colormap=source.colormap.name, visible=False,
                                       contrast_limits=source.contrast_limits,
                                       metadata=dict(metadata), **transform_kwargs(source, leading=1)))
    viewer.layers.selection.active = layers[0]
    return layers


def volume_from_layer(layer: Any, axis: int, copy: bool = True) -> Any:
    """An ``ldm_med.Volume`` in the layer's own axis order, spacing from its ``scale``.

    ``acquired`` comes from the layer's metadata when it was recorded along ``axis``. With ``copy``
    the voxels are a float32 copy, so nothing done to the volume can reach the layer.
    """
    import ldm_med

    data = np.array(layer.data, dtype=np.float32, copy=True) if copy else np.asarray(layer.data)
    md = layer.metadata
    acquired = md.get("acquired")
    if acquired is None or md.get("slice_axis") != axis or len(acquired) != data.shape[axis]:
        acquired = None
    # voxel size: column norms of the layer's whole linear data -> world map
    linear = (np.asarray(layer.affine.affine_matrix)[:3, :3] @ np.asarray(layer.rotate)
              @ shear_matrix(np.asarray(layer.shear), 3) @ np.diag(np.asarray(layer.scale, float)))
    affine = np.diag([*np.linalg.norm(linear, axis=0), 1.0])
    metadata = {k: md[k] for k in ("modality", "rescale") if k in md}
    metadata["source"] = layer.name
    return ldm_med.Volume(data, affine, slice_axis=axis, acquired=acquired, metadata=metadata)
