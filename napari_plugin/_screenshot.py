"""The README's screenshot: the widget after a run on the CT sample.

    xvfb-run -a python -m napari_plugin._screenshot docs/napari_widget.png

``reconstruct_ct_sample`` is shared with the test that checks the rendered viewer is not blank.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def reconstruct_ct_sample(viewer: Any) -> Any:
    """Open the CT sample, dock the widget, reconstruct (pretrained refiner, 2 samples, 1 step, CPU)
    synchronously, and show a coronal view through the filled slices. Returns the widget."""
    from napari_plugin._sample_data import ct_phantom
    from napari_plugin._widget import ReconstructWidget

    data, kwargs, _ = ct_phantom()[0]
    source = viewer.add_image(data, **kwargs)
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruct missing slices", area="right")
    widget.refine.value = "pretrained"
    widget.samples.value = 2
    widget.show_advanced.value = True
    widget.steps.value = 1
    widget.device.value = "cpu"
    widget.run(sync=True)
    # show the uncertainty (off by default) over the reconstruction: bright where slices were made
    viewer.layers[f"{source.name} uncertainty"].visible = True
    viewer.layers[f"{source.name} synthesised"].visible = False
    viewer.layers.selection.active = viewer.layers[f"{source.name} reconstructed"]
    # coronal view (slices run top to bottom, superior up), through the middle of the body
    ndim = viewer.dims.ndim
    s_axis, p_axis = ndim - 3, ndim - 2
    viewer.dims.order = tuple(a for a in range(ndim) if a != p_axis)[:-2] + (p_axis, s_axis, ndim - 1)
    viewer.dims.set_point(p_axis, source.translate[1] + source.scale[1] * data.shape[1] * 0.55)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9
    camera.orientation2d = ("up", "right")
    viewer.reset_view()
    return widget


def main(out: str) -> None:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 860)
    reconstruct_ct_sample(viewer)
    save_screenshot(viewer, out)


def save_screenshot(viewer, out: str) -> None:
    """Write the whole window (widgets included) to ``out`` as PNG, then close the viewer."""
    from PIL import Image

    image = viewer.screenshot(canvas_only=False, flash=False)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/napari_widget.png")
